"""Drift classification and reports from refresh-preview engine events captured from the real
engine (tests/stacks/fixtures)."""

import json
import random

from stacks.drift import (
    Change,
    StackDrift,
    classify,
    exit_code,
    json_report,
    markdown_report,
    text_report,
)
from tests.engine import HMAC_SECRET
from tests.stacks.fixtures import CLEAN_STACK, DRIFTED_STACK


def by_name(result: StackDrift) -> dict:
    return {resource.name: resource for resource in result.resources}


def test_each_resource_is_classified():
    result = classify("dev", DRIFTED_STACK)
    statuses = {name: r.status for name, r in by_name(result).items()}
    assert statuses == {  # no stack, component or provider rows
        "tandem-dev-deployments": "unchanged",
        "tandem-dev-llm-template": "unchanged",
        "tandem-dev-registry-auth": "unchanged",
        "tandem-dev-clip-template": "unchanged",
        "tandem-dev-llm-endpoint": "drifted",
        "tandem-dev-clip-endpoint": "drifted",
        "tandem-dev-hmac": "deleted",
    }
    resources = by_name(result)
    assert resources["tandem-dev-llm-endpoint"].changes == (
        Change("gpu.pools", '["ADA_24"]', '["ADA_80_PRO"]'),  # an object's members, one by one
        Change("workers.max", "1", "3"),
    )
    # env is secret: the engine saw the change, the values stay hidden
    assert resources["tandem-dev-clip-endpoint"].changes == (Change("env", "[secret]", "[secret]"),)
    assert exit_code([result]) == 2


def test_secret_values_are_never_printed():
    result = classify("dev", DRIFTED_STACK)
    for report in (text_report([result]), markdown_report(result), json_report([result])):
        assert HMAC_SECRET not in report and "[secret]" in report


def test_no_drift_and_errors():
    clean = classify("prod", CLEAN_STACK)
    assert len(clean.resources) == 7 and clean.drifted == [] and exit_code([clean]) == 0
    assert text_report([clean]) == "prod: no drift"
    broken = StackDrift("prod", error="passphrase missing: set PULUMI_CONFIG_PASSPHRASE")
    assert exit_code([clean, broken]) == 1  # an unchecked stack is never "no drift"
    assert exit_code([classify("dev", DRIFTED_STACK), broken]) == 1
    assert "could not be checked: passphrase missing" in text_report([broken])
    assert "Could not be checked" in markdown_report(broken)


def test_the_announcing_events_alone_are_no_drift():
    """A refresh's resourcePreEvent comes before the provider's read: drift is in the
    resOutputsEvent that follows."""
    announced = [event for event in DRIFTED_STACK if "resourcePreEvent" in event]
    assert classify("dev", announced).resources == []


def test_the_markdown_is_the_same_from_run_to_run():
    first = markdown_report(classify("dev", DRIFTED_STACK))
    shuffled = list(DRIFTED_STACK)
    random.Random(4).shuffle(shuffled)
    assert markdown_report(classify("dev", shuffled)) == first
    assert first.startswith("## Drift in stack `dev`\n\n2 drifted, 1 deleted out of band, ")
    assert "| tandem-dev-llm-endpoint | `pulumi-python:dynamic:Resource` | drifted |" in first
    assert "| tandem-dev-hmac | `pulumi-python:dynamic:Resource` | deleted" in first


def test_text_and_json_reports():
    result = classify("dev", DRIFTED_STACK)
    text = text_report([result])
    assert text.splitlines()[0] == "dev: 2 drifted, 1 deleted out of band, 4 unchanged"
    assert "    workers.max: 1 -> 3" in text
    [parsed] = json.loads(json_report([result]))
    assert parsed["stack"] == "dev" and parsed["exit_code"] == 2 and parsed["error"] is None
    assert {r["status"] for r in parsed["resources"]} == {"unchanged", "drifted", "deleted"}
