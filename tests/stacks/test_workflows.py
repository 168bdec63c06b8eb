"""The GitHub workflows (.github/): what `make lint` cannot see. Their shell passes shellcheck,
every `python -m stacks` they run is a command the CLI accepts, jobs that change a stack hold
its lock, and the comment and drift-issue scripts drive `gh` as intended (a recording `gh` that
answers with GitHub's REST shapes and applies the scripts' own --jq filters with jq)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.__main__ import parser
from tests.stacks.fixtures import PREVIEW_TEXT

GITHUB = Path(__file__).resolve().parents[2] / ".github"
SCRIPTS = GITHUB / "scripts"
WORKFLOWS = {path.name: yaml.safe_load(path.read_text()) for path in GITHUB.glob("workflows/*.yml")}
ACTION = yaml.safe_load((GITHUB / "actions/pulumi-setup/action.yml").read_text())
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def jobs():
    for name, workflow in WORKFLOWS.items():
        for job_id, job in workflow["jobs"].items():
            yield f"{name}:{job_id}", job


def run_blocks():
    for where, job in jobs():
        for step in job["steps"]:
            if "run" in step:
                yield where, step["run"]
    for step in ACTION["runs"]["steps"]:
        if "run" in step:
            yield "pulumi-setup", step["run"]


def test_the_five_workflows_are_there():
    names = {"ci.yml", "preview.yml", "review-cleanup.yml", "deploy.yml", "drift.yml"}
    assert set(WORKFLOWS) == names


def test_the_workflows_install_the_engine_version_the_tests_build():
    """pulumi-setup reads the CLI version from infra/engine/go.mod, as `make engine` does."""
    [install] = [line for _, run in run_blocks() for line in run.splitlines() if "version=" in line]
    command = install.strip().removeprefix("version=")
    found = subprocess.run(
        ["/bin/bash", "-c", f"echo {command}"], cwd=GITHUB.parent, capture_output=True, text=True
    ).stdout.strip()
    go_mod = (GITHUB.parent / "infra/engine/go.mod").read_text()
    assert re.search(rf"github.com/pulumi/pulumi/pkg/v3 v{re.escape(found)}\n", go_mod), found
    assert re.fullmatch(r"3\.\d+\.\d+", found)


def test_run_blocks_pass_shellcheck_and_take_event_data_only_from_env(tmp_path):
    for n, (where, script) in enumerate(run_blocks()):
        assert "${{" not in script, f"{where}: pass expressions through env, not into the shell"
        # GitHub runs each block as `bash -e {0}` (pipefail too).
        path = tmp_path / f"{n}.sh"
        path.write_text(f"#!/usr/bin/env bash\n# {where}\nset -eo pipefail\n{script}")
        check = subprocess.run([SHELLCHECK, path], capture_output=True, text=True)
        assert check.returncode == 0, f"{where}:\n{check.stdout}"


SAMPLES = {  # the shell words the workflows pass, and a value each could take
    '"$STACK"': "prod",
    '"$PR"': "42",
    '"$SHA"': "0123456789abcdef",
    '"$open_prs"': "1,2",
    '"$(jq -r .api_url outputs.json)"': "https://api.example.run.app",
    '"${endpoints[@]}"': "--endpoint-id=ep1",
    '"${own[@]}"': "--own-gpu-endpoints",
}


def stacks_commands():
    for where, script in run_blocks():
        for line in script.splitlines():
            if "python -m stacks" in line:
                for word, value in SAMPLES.items():
                    line = line.replace(word, value)
                words = shlex.split(line.split(">")[0])
                yield where, words[words.index("stacks") + 1 :]


def test_every_stacks_command_the_workflows_run_is_accepted():
    commands = list(stacks_commands())
    kinds = {tuple(argv[:2]) for _, argv in commands}
    assert kinds == {
        ("review", "up"),
        ("review", "destroy"),
        ("review", "gc"),
        ("drift", "--stack"),
        ("cost", "prod"),
        ("check", "--api-url"),
    }
    for where, argv in commands:
        assert "$" not in " ".join(argv), f"{where}: unknown placeholder in {argv}"
        parser().parse_args(argv)  # exits (fails the test) on a flag the CLI does not know


def test_jobs_that_change_a_stack_hold_its_lock():
    changing = re.compile(r"pulumi up|stacks review (up|destroy)")
    locked = {}
    for where, job in jobs():
        if any(changing.search(step.get("run", "")) for step in job["steps"]):
            assert job["concurrency"]["group"].startswith("stack-"), where
            assert job["concurrency"]["cancel-in-progress"] is False, where
            locked[where] = job["concurrency"]["group"]
    assert set(locked) == {"preview.yml:review", "review-cleanup.yml:destroy", "deploy.yml:deploy"}
    # The review stack's up and destroy wait for each other.
    assert locked["preview.yml:review"] == locked["review-cleanup.yml:destroy"]


def test_permissions_are_granted_per_job_and_cloud_access_only_through_the_setup():
    for name, workflow in WORKFLOWS.items():
        assert workflow["permissions"] == {}, name
    for where, job in jobs():
        uses = [step.get("uses", "") for step in job["steps"]]
        assert uses[0].startswith("actions/checkout@"), where
        assert job["steps"][0]["with"]["persist-credentials"] is False, where
        cloud = "./.github/actions/pulumi-setup" in uses
        assert (job["permissions"].get("id-token") == "write") == cloud, where


def fake_gh(tmp_path, monkeypatch, answers):
    """Put a `gh` on PATH that logs its arguments and answers `--jq` calls with the REST
    shape in `answers`, filtered by the caller's own jq expression."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    gh = bin_dir / "gh"
    gh.write_text(
        f"""#!{sys.executable}
import json, subprocess, sys
args = sys.argv[1:]
with open({str(tmp_path / "gh.log")!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
if "--jq" in args:
    answers = json.load(open({str(tmp_path / "answers.json")!r}))
    data = json.dumps(answers)
    expr = args[args.index("--jq") + 1]
    sys.stdout.write(subprocess.run(["jq", "-r", expr], input=data, text=True,
                                    capture_output=True, check=True).stdout)
"""
    )
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("GH_REPO", "acme/tandem")

    def calls():
        log = tmp_path / "gh.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def script(name, *args, cwd=None):
    return subprocess.run(
        [SCRIPTS / name, *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


COMMENTS = [  # GET /repos/{owner}/{repo}/issues/{n}/comments
    {"id": 11, "body": "Looks good", "user": {"login": "alice"}},
    {"id": 12, "body": "<!-- tandem:review -->\n### Review stack", "user": {"login": "bot"}},
]


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("tandem:review", ["api", "--method", "PATCH", "repos/acme/tandem/issues/comments/12"]),
        ("tandem:preview", ["api", "--method", "POST", "repos/acme/tandem/issues/7/comments"]),
    ],
)
def test_pr_comment_edits_its_own_comment_or_adds_one(tmp_path, monkeypatch, marker, expected):
    calls = fake_gh(tmp_path, monkeypatch, COMMENTS)
    monkeypatch.setenv("PR", "7")
    (tmp_path / "body.md").write_text("### Review stack `pr-7`\n")
    result = script("pr-comment", marker, tmp_path / "body.md")
    assert result.returncode == 0, result.stderr
    listing, write = calls()
    assert listing[:3] == ["api", "--paginate", "repos/acme/tandem/issues/7/comments"]
    assert write[:4] == expected
    assert write[4:] == ["--raw-field", f"body=<!-- {marker} -->\n### Review stack `pr-7`"]


ISSUES = [  # gh issue list --json number,title
    {"number": 3, "title": "Drift in stack prod"},
    {"number": 4, "title": "Drift in stack dev"},
]


@pytest.mark.parametrize(
    ("stack", "status", "code", "expected"),
    [
        ("dev", 2, 0, [["issue", "edit", "4"]]),
        ("dev", 0, 0, [["issue", "close", "4", "--comment", "No drift any more: RUN"]]),
        ("pr-9", 0, 0, []),
        ("pr-9", 2, 0, [["label", "create", "drift"], ["issue", "create", "--title"]]),
        ("dev", 1, 1, []),
    ],
)
def test_drift_issue_opens_updates_or_closes_one_issue_per_stack(
    tmp_path, monkeypatch, stack, status, code, expected
):
    calls = fake_gh(tmp_path, monkeypatch, ISSUES)
    monkeypatch.setenv("RUN_URL", "RUN")
    (tmp_path / "drift.md").write_text(f"## Drift in stack `{stack}`\n")
    result = script("drift-issue", stack, status, tmp_path / "drift.md")
    assert result.returncode == code, result.stderr
    listing, *changes = calls()
    assert listing[:2] == ["issue", "list"] and "--label" in listing
    assert [change[: len(want)] for change, want in zip(changes, expected, strict=True)] == expected
    body = f"## Drift in stack `{stack}`\n\nFound by RUN"
    for change in changes:
        if change[:2] in (["issue", "edit"], ["issue", "create"]):
            assert change[change.index("--body") + 1] == body
    if code:
        assert "could not be checked" in result.stderr


def test_preview_comment_shows_each_stack_with_its_counts(tmp_path):
    (tmp_path / "preview-dev.txt").write_text(PREVIEW_TEXT.read_text())  # the real engine's
    (tmp_path / "preview-prod.txt").write_text("error: no credentials\n")
    result = script(
        "preview-comment", "0123456789abcdef", "dev=success", "prod=failure", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("### `pulumi preview` at 0123456789ab\n")
    assert "<b>dev</b>: success (~ 1 to update, 9 unchanged)</summary>" in out
    assert "<b>prod</b>: failure</summary>" in out
    assert "~ max        : 1 => 2" in out and "error: no credentials" in out


def secrets_of(value) -> set[str]:
    """The repository or environment secrets a piece of a workflow names."""
    return set(re.findall(r"secrets\.([A-Z_]+)", json.dumps(value)))


def test_secrets_come_from_github_environments_and_prod_only_to_its_deploy():
    """Written as the attack: a branch's pull request (or a push of a workflow on a branch)
    must not see prod's credentials. Every secret is read inside a job bound to an environment
    (none at workflow level, where a repository secret would be shared by every job); pull
    request workflows take `dev`'s only; `prod` (release tags, reviewers) serves only the
    deploy of a published release; prod's drift reads through `prod-read`."""
    for name, workflow in WORKFLOWS.items():
        assert not secrets_of(workflow.get("env", {})), name
        triggers = workflow.get(True) or workflow.get("on")  # YAML reads `on:` as True
        for job_id, job in workflow["jobs"].items():
            if not secrets_of(job):
                continue
            environment = job.get("environment")
            environment = environment["name"] if isinstance(environment, dict) else environment
            assert environment, f"{name}:{job_id} reads secrets outside an environment"
            if "pull_request" in triggers:
                assert environment == "dev", f"{name}:{job_id}"
            chosen = re.findall(r"(?:&&|\|\|)\s*'([a-z-]+)'", environment) or [environment]
            if "prod" in chosen:
                assert (name, environment) == (
                    "deploy.yml",
                    "${{ github.event_name == 'release' && 'prod' || 'dev' }}",
                ), f"{name}:{job_id}"
                assert set(triggers) == {"push", "release"}
                assert triggers["push"] == {"branches": ["main"]}
    drift = WORKFLOWS["drift.yml"]["jobs"]["drift"]["environment"]
    assert drift == "${{ matrix.stack == 'prod' && 'prod-read' || 'dev' }}"


def test_the_post_deploy_check_reads_runpod_with_a_read_only_key():
    steps = {step.get("name"): step for step in WORKFLOWS["deploy.yml"]["jobs"]["deploy"]["steps"]}
    assert secrets_of(steps["Post-deploy check"]) == {"TANDEM_API_KEY", "RUNPOD_READ_API_KEY"}
    assert secrets_of(steps["pulumi up"]) == {"RUNPOD_API_KEY"}


def test_the_pulumi_cli_is_installed_only_once_its_checksum_matches():
    [install] = [run for where, run in run_blocks() if where == "pulumi-setup" and "tar " in run]
    assert "get.pulumi.com | sh" not in install
    checked, unpacked = install.index("sha256sum --check"), install.index("tar -xzf")
    assert checked < unpacked
