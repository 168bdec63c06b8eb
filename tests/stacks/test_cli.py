"""`python -m stacks`: review stacks and drift, with the Automation API seam replaced by a
double that records each call (tests/engine runs the same commands on the real engine)."""

from datetime import UTC, datetime, timedelta

import pytest

from infra.config import stack_settings
from infra.plan import run_program
from stacks.__main__ import main
from stacks.review import StackInfo, UsageError, duration, pr_number, stale
from stacks.workspace import UpResult, check_credentials
from tests.stacks.fixtures import CLEAN_STACK, DRIFTED_STACK


class RecordingWorkspace:
    """Answers as the Automation API would, and records what was asked."""

    def __init__(self, stacks=(), events=None, gone=()):
        self.calls: list[tuple] = []
        self._stacks = list(stacks)
        self._events = events or {}
        self._gone = set(gone)

    def stacks(self):
        self.calls.append(("stacks",))
        return self._stacks

    def up(self, stack, settings, shared_secrets, message):
        self.calls.append(("up", stack, settings, tuple(shared_secrets), message))
        outputs = {"api_url": "https://pr.example.run.app", "hmac": "[secret]"}
        return UpResult(outputs, {"create": 30, "same": 0})

    def destroy(self, stack):
        self.calls.append(("destroy", stack))
        return stack not in self._gone

    def preview_refresh(self, stack):
        self.calls.append(("preview_refresh", stack))
        events = self._events[stack]
        if isinstance(events, Exception):
            raise events
        return events


@pytest.fixture(autouse=True)
def pulumi_login(monkeypatch):
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", "pul-test")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)


def run(argv, workspace):
    return main(argv, workspace=lambda _work_dir: workspace)


def test_review_up_creates_the_stack_and_prints_the_comment(capsys, tmp_path):
    workspace = RecordingWorkspace()
    comment = tmp_path / "review.md"
    argv = ["review", "up", "--pr", "42", "--sha", "0123456789abcdef", "--comment-file", comment]
    assert run([str(arg) for arg in argv], workspace) == 0
    [call] = workspace.calls
    assert call == (
        "up",
        "pr-42",
        stack_settings("pr-42"),  # dev's settings with the review overrides, 72 h to live
        ("runpodApiKey", "supabaseDatabaseUrl", "supabaseCaCert", "supabaseServiceKey"),
        "review stack for PR #42 at 0123456789abcdef",
    )
    out = capsys.readouterr().out
    assert out.startswith("api_url: https://pr.example.run.app\n")
    assert "### Review stack `pr-42` at 0123456789ab" in out and "Changes: 30 create" in out
    assert "| `hmac` | [secret] |" in out
    assert out == f"api_url: https://pr.example.run.app\n{comment.read_text()}\n"


def test_review_up_sets_the_config_the_offline_plan_runs(tmp_path):
    """What `review up` makes of pr-7 is what `python -m infra.plan --stack pr-7` plans."""
    workspace = RecordingWorkspace()
    assert run(["review", "up", "--pr", "7", "--ttl", "48h"], workspace) == 0
    [(_, stack, settings, _, _)] = workspace.calls
    assert settings == stack_settings("pr-7") | {"tandem:ttlHours": 48}
    planned = run_program(stack, settings)
    assert planned == run_program("pr-7", stack_settings("pr-7") | {"tandem:ttlHours": 48})
    assert {r["type"] for r in planned} >= {"gcp:cloudrunv2/service:Service"}


def test_review_up_gives_a_pr_that_changes_the_workers_its_own_endpoints():
    workspace = RecordingWorkspace()
    assert run(["review", "up", "--pr", "7", "--own-gpu-endpoints"], workspace) == 0
    [(_, _, settings, _, _)] = workspace.calls
    assert settings == stack_settings("pr-7") | {"tandem:ownGpuEndpoints": True}


def test_review_destroy_tolerates_a_stack_already_gone(capsys):
    workspace = RecordingWorkspace(gone={"pr-7"})
    assert run(["review", "destroy", "--pr", "7"], workspace) == 0
    assert workspace.calls == [("destroy", "pr-7")]
    assert "pr-7: already gone" in capsys.readouterr().out
    assert run(["review", "destroy", "--stack", "pr-8"], workspace) == 0
    assert "pr-8: destroyed and removed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["review", "destroy", "--stack", "prod"], "refusing 'prod'"),
        (["review", "destroy", "--stack", "pr-0"], "refusing 'pr-0'"),
        (["review", "destroy", "--pr", "-3"], "positive integer"),
        (["review", "up", "--pr", "abc"], "positive integer"),
        (["review", "up", "--pr", "1", "--ttl", "3 weeks"], "malformed duration"),
        (["review", "gc", "--max-age", "72"], "malformed duration"),
        (["review", "gc", "--open-prs", "1,x"], "positive integer"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_done(argv, words, capsys):
    workspace = RecordingWorkspace()
    assert run(argv, workspace) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert [c for c in workspace.calls if c[0] in ("up", "destroy")] == []


def test_gc_destroys_expired_and_closed_review_stacks(capsys):
    now = datetime.now(UTC)
    workspace = RecordingWorkspace(
        stacks=[
            StackInfo("dev", now - timedelta(days=30)),
            StackInfo("pr-1", now - timedelta(hours=100)),
            StackInfo("pr-2", now - timedelta(hours=1)),
            StackInfo("pr-3", now - timedelta(hours=2)),
        ]
    )
    assert run(["review", "gc", "--max-age", "72h", "--open-prs", "1,2"], workspace) == 0
    destroyed = [c[1] for c in workspace.calls if c[0] == "destroy"]
    assert destroyed == ["pr-1", "pr-3"]  # past its TTL; closed. pr-2 stays, dev is not one
    out = capsys.readouterr().out
    assert "pr-1: destroyed (last updated 4d 4h ago)" in out
    assert "pr-3: destroyed (PR #3 is closed)" in out
    workspace.calls.clear()
    assert run(["review", "gc", "--max-age", "72h"], workspace) == 0  # no PR list: age only
    assert [c[1] for c in workspace.calls if c[0] == "destroy"] == ["pr-1"]


def test_stale_reports_the_reason():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    old = StackInfo("pr-5", now - timedelta(days=4, hours=3))
    assert stale([old], now, duration("3d"), None) == [("pr-5", "last updated 4d 3h ago")]
    assert stale([old], now, duration("5d"), None) == []
    assert pr_number(" 12 ") == 12


def test_drift_exit_codes_and_reports(capsys):
    workspace = RecordingWorkspace(events={"dev": DRIFTED_STACK, "prod": CLEAN_STACK})
    assert run(["drift"], workspace) == 2
    assert workspace.calls == [("preview_refresh", "dev"), ("preview_refresh", "prod")]
    out = capsys.readouterr().out
    assert "dev: 2 drifted, 1 deleted out of band" in out and "prod: no drift" in out
    assert run(["drift", "--stack", "prod", "--format", "markdown"], workspace) == 0
    assert capsys.readouterr().out.startswith("## Drift in stack `prod`\n\nNo drift.")


def test_a_stack_that_cannot_be_checked_is_an_error(capsys):
    workspace = RecordingWorkspace(events={"dev": CLEAN_STACK, "prod": RuntimeError("no access")})
    assert run(["drift", "--format", "json"], workspace) == 1
    assert '"error": "RuntimeError: no access"' in capsys.readouterr().out


def test_unknown_stacks_and_projects_are_usage_errors(capsys, tmp_path):
    workspace = RecordingWorkspace()
    assert run(["drift", "--stack", "staging"], workspace) == 1
    assert "unknown stack 'staging'" in capsys.readouterr().err
    assert run(["--work-dir", str(tmp_path), "drift"], workspace) == 1
    assert "not a Pulumi project" in capsys.readouterr().err
    assert workspace.calls == []


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "PULUMI_ACCESS_TOKEN"),
        ({"PULUMI_BACKEND_URL": "gs://state"}, "PULUMI_CONFIG_PASSPHRASE"),
    ],
)
def test_missing_pulumi_settings_are_refused(env, words):
    with pytest.raises(UsageError, match=words):
        check_credentials(env)
    check_credentials({"PULUMI_BACKEND_URL": "gs://state", "PULUMI_CONFIG_PASSPHRASE": "p"})
    check_credentials({"PULUMI_ACCESS_TOKEN": "pul-x"})


def test_missing_login_stops_before_any_call(monkeypatch, capsys):
    monkeypatch.delenv("PULUMI_ACCESS_TOKEN")
    workspace = RecordingWorkspace()
    assert run(["review", "destroy", "--pr", "3"], workspace) == 1
    assert workspace.calls == []
    assert "no Pulumi backend" in capsys.readouterr().err
