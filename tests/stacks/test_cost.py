"""`python -m stacks cost`: what the local RunPod billed a stack's endpoints (worker seconds x
the placed GPU's price, as RunPod bills) beside the dev plan's estimate, its deployments' spend
by name prefix, an endpoint billed over its estimate flagged (the drift issue's line)."""

import json
import time

import pytest

from infra import plan
from stacks.__main__ import main
from tests.runpod_control import CONTROLLED_IMAGE, ControlPlane
from tests.stacks.test_logs import Outputs

KEY = "rp-cost-key"
CRASHING_IMAGE = "tandem/crashing:test"


@pytest.fixture(scope="module")
def runpod():
    with ControlPlane(KEY, images={CRASHING_IMAGE: "tests.workers.crashing"}) as plane:
        yield plane
    assert plane.violations == []


@pytest.fixture
def environment(runpod, monkeypatch, tmp_path):
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "unused")
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    monkeypatch.setenv("RUNPOD_REST_API", runpod.url)


def warm_endpoint(runpod, name: str, pool: str, image: str = CONTROLLED_IMAGE) -> str:
    body = {
        "name": name,
        "type": "QUEUE",
        "image": image,
        "gpu": {"pools": [pool]},
        "workers": {"min": 1, "max": 1},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    return runpod.rest("POST", "/v2/serverless", json=body).json()["id"]


def billed(runpod, endpoint: str) -> float:
    records = runpod.rest("GET", "/v2/billing/serverless").json()["records"]
    return sum(r["totalAmount"] for r in records if r["serverlessId"] == endpoint)


def test_billed_spend_beside_the_estimate_with_overspend_flagged(runpod, environment, capsys):
    # dev's clip endpoint is estimated at $0 (no warm worker, no active hours expected): a
    # warm B200 worker ($8.64/h) overspends it within seconds.
    made = [
        warm_endpoint(runpod, name, "BLACKWELL_180")
        for name in ("tandem-dev-clip", "tandem-deploy-dev-0123456789ab", "someone-elses")
    ]
    clip, deployed, _elsewhere = made
    try:
        deadline = time.monotonic() + 30
        while min(billed(runpod, endpoint) for endpoint in made) < 0.02:
            assert time.monotonic() < deadline, "the local RunPod billed nothing"
            time.sleep(0.5)
        before = billed(runpod, deployed)
        stack = Outputs({"clip_endpoint_id": clip, "api_url": "https://api"})
        assert main(["cost", "dev", "--days", "1"], workspace=lambda _dir: stack) == 0
        report = capsys.readouterr().out.splitlines()
        assert report[0] == "dev: RunPod over the last 1 days, billed vs estimated"
        assert (
            report[1].startswith("  clip         billed ") and "estimated      $0.00" in report[1]
        )
        assert report[1].endswith("OVER by more than 25%")
        assert (
            report[2].startswith("  deployments  billed ") and "estimated          -" in report[2]
        )
        # The endpoint named with the stack's deployment prefix, not someone else's.
        deployments = float(report[2].split("$")[1].split()[0])
        assert before - 0.01 <= deployments <= billed(runpod, deployed) + 0.01

        assert main(["cost", "dev", "--format", "markdown"], workspace=lambda _d: stack) == 0
        [line] = capsys.readouterr().out.strip().splitlines()
        assert line.startswith("- Spend: `dev`'s clip endpoint was billed $")
        assert "over 25% above its estimate of $0.00" in line
    finally:
        for endpoint in made:
            runpod.rest("DELETE", f"/v2/serverless/{endpoint}")


def test_a_stack_endpoint_whose_workers_fail_to_start_is_named(runpod, environment, capsys):
    """Reported, not changed: the endpoint is the program's."""
    llm = warm_endpoint(runpod, "tandem-dev-llm", "ADA_24", CRASHING_IMAGE)
    try:
        deadline = time.monotonic() + 30
        while not runpod.rest("GET", f"/v2/serverless/{llm}/workers").json()["summary"][
            "unhealthy"
        ]:
            assert time.monotonic() < deadline, "the worker was never listed unhealthy"
            time.sleep(0.3)
        stack = Outputs({"llm_endpoint_id": llm})
        assert main(["cost", "dev", "--format", "markdown"], workspace=lambda _d: stack) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[-1].startswith("- Workers failing to start: `dev`'s llm endpoint has 1")
        assert lines[-1].endswith("Their logs: `python -m stacks logs dev llm`")
        workers = runpod.rest("GET", f"/v2/serverless/{llm}").json()["workers"]
        assert workers["min"] == 1  # left as the program made it
    finally:
        runpod.rest("DELETE", f"/v2/serverless/{llm}")


def test_the_plan_takes_an_endpoints_usage_from_its_bill(runpod, environment, tmp_path, capsys):
    """With the stack's history (its outputs), an endpoint's usage-based line is what RunPod
    billed in the last 30 days (less its warm workers' share), not the expected hours."""
    llm = warm_endpoint(runpod, "tandem-dev-llm", "BLACKWELL_180")
    try:
        deadline = time.monotonic() + 30
        while billed(runpod, llm) < 0.02:
            assert time.monotonic() < deadline, "the local RunPod billed nothing"
            time.sleep(0.5)
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({"llm_endpoint_id": llm, "api_url": "https://api"}))
        with pytest.raises(SystemExit) as exited:
            plan.main(["--stack", "dev", "--json", "--billed", str(outputs)])
        assert exited.value.code == 0
        after = billed(runpod, llm)
    finally:
        runpod.rest("DELETE", f"/v2/serverless/{llm}")
    costs = {c["resource"]: c for c in json.loads(capsys.readouterr().out)["cost"]["resources"]}
    line = costs["tandem-dev-llm-endpoint"]
    assert line["basis"].endswith("in the last 30 days")
    assert 0.02 * 730 / 720 <= line["usage"] <= after * 730 / 720  # dev's llm: no warm worker
    # An endpoint the outputs do not name keeps the stack's expectation.
    assert costs["tandem-dev-clip-endpoint"]["basis"].endswith("h of active workers expected")


def test_cost_needs_a_runpod_key(environment, monkeypatch, capsys):
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["cost", "dev"], workspace=lambda _dir: Outputs({})) == 1
    assert "RunPod's billing needs RUNPOD_API_KEY" in capsys.readouterr().err


def test_cost_of_an_unknown_stack_says_so(environment, capsys):
    assert main(["cost", "staging"], workspace=lambda _dir: Outputs({})) == 1
    assert "unknown stack 'staging'" in capsys.readouterr().err
