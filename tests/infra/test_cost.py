"""The stack's monthly cost: estimated from what the program declares and the stack's expected
usage, at the dated GCP price table and a RunPod catalog; shown in the plan and in the PR
comment (golden), refused by the budget policy when over budget.monthlyUsd, and never $0 for a
price that is unknown."""

import json
import os
from pathlib import Path

import pytest

from infra.config import stack_settings
from infra.cost import Expected, comment, cost_table, estimate
from infra.plan import make_plan, run_program
from infra.policy.rules import PolicyConfig, check
from runpod_api import catalog

SNAPSHOTS = Path(__file__).with_name("snapshots")


GPUS = catalog.snapshot()["gpus"]


def test_each_priced_resource_is_estimated_from_the_config():
    costs = {cost.resource: cost for cost in make_plan("prod").cost.costs}
    gpu_types = stack_settings("prod")["tandem:gpu"]["llm"]["gpuTypes"]
    hourly = catalog.selection_price(gpu_types, GPUS) * 3600
    llm = costs["tandem-prod-llm-endpoint"]  # workersMin 1, expectedActiveHours 150
    assert llm.always_on == pytest.approx(hourly * 730)
    assert llm.usage == pytest.approx(hourly * 150)
    transcribe = costs["tandem-prod-transcribe-endpoint"]  # workersMin 0
    assert transcribe.always_on == 0 and transcribe.usage > 0
    api = costs["api-service"]  # one warm instance of 2 vCPU, 2 GiB, instance-billed
    assert api.always_on == pytest.approx((2 * 0.000018 + 2 * 0.000002) * 730 * 3600)
    database = costs["database-instance"]  # db-custom-2-7680, high availability
    assert database.always_on == pytest.approx(2 * ((2 * 0.0413 + 7.5 * 0.007) * 730 + 10 * 0.17))
    assert costs["buckets-uploads"].usage == pytest.approx(200 * 0.020)


def test_a_price_missing_from_the_catalog_is_unknown_never_zero():
    [resource] = [r for r in run_program("dev") if r["name"] == "tandem-dev-llm-endpoint"]
    pools = set(resource["inputs"]["gpu"]["pools"])
    unpriced = [
        gpu | {"price": {"serverless": None}} if gpu.get("pool") in pools else gpu for gpu in GPUS
    ]
    cost = estimate([resource], Expected("dev"), unpriced, "a catalog without that price")
    [line] = cost.costs
    assert line.monthly is None and cost.unknown == ["tandem-dev-llm-endpoint"]
    assert cost.total == 0  # the known part: the unknown one is named, not counted
    assert "unknown price" in cost_table(cost)
    assert "+ unknown: tandem-dev-llm-endpoint" in cost_table(cost)


def test_the_pr_comment_shows_the_estimate_and_its_change():
    """Golden: dev at the PR's head (its llm expected 20 active hours) against a base where it
    expected none."""
    base_settings = stack_settings("dev")
    base_settings["tandem:gpu"]["llm"]["expectedActiveHours"] = 0
    head, base = make_plan("dev").as_json(), make_plan("dev", base_settings).as_json()
    rendered = comment(head, base, "dev")
    assert rendered.startswith("### Monthly cost of `dev`: $36.00 (+$22.32/month)")
    golden = SNAPSHOTS / "dev-cost-comment.md"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        golden.write_text(rendered)
    assert rendered == golden.read_text(), "the PR comment changed: review the diff"
    assert comment(head, None, "dev").startswith("### Monthly cost of `dev`: $36.00 (no estimate")


def test_a_stack_over_its_budget_fails_the_policies_naming_what_costs_most():
    plan = make_plan("prod")
    assert plan.violations == []  # within its 4,000
    tight = PolicyConfig(public_api=True, monthly_budget_usd=500, expected=Expected("prod"))
    [(policy, name, message)] = check(plan.resources, tight)
    assert (policy, name) == ("within-budget", "stack")
    assert "is over budget.monthlyUsd $500.00 (most: tandem-prod-llm-endpoint $1,392.84" in message


def test_review_stacks_get_a_small_budget():
    assert make_plan("pr-7").cost.total < 50
    settings = stack_settings("pr-7")
    assert settings["tandem:budget"] == {"monthlyUsd": 50}


def test_the_api_prices_usage_at_its_endpoints_gpus():
    """GPU_PRICES: what the API's usage rows cost a second on each endpoint (app/services/
    usage.py), the dearest card of its pools, as the estimate prices them."""
    [api] = [r for r in run_program("dev") if r["name"] == "api-service"]
    envs = {e["name"]: e.get("value") for e in api["inputs"]["template"]["containers"][0]["envs"]}
    prices = json.loads(envs["GPU_PRICES"])
    gpus = stack_settings("dev")["tandem:gpu"]
    assert set(prices) == set(gpus)
    for name, settings in gpus.items():
        assert prices[name] == catalog.selection_price(settings["gpuTypes"], GPUS)
