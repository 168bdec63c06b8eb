"""Drift classification and reports from refresh-preview engine events (tests/stacks/events.py)."""

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
from tests.stacks.events import CLEAN_STACK, DRIFTED_STACK, NEW_SECRET, OLD_SECRET


def by_name(result: StackDrift) -> dict:
    return {resource.name: resource for resource in result.resources}


def test_each_resource_is_classified():
    result = classify("dev", DRIFTED_STACK)
    statuses = {name: r.status for name, r in by_name(result).items()}
    assert statuses == {  # no stack or provider rows
        "uploads": "unchanged",
        "api-service": "drifted",
        "tandem-dev-llm-endpoint": "drifted",
        "secrets-hmac": "unchanged",
        "database-instance": "deleted",
        "stray": "created",
    }
    resources = by_name(result)
    assert resources["api-service"].changes == (
        Change("template.scaling.minInstanceCount", "0", "3"),
    )
    assert resources["tandem-dev-llm-endpoint"].changes == (
        Change("env", "[secret]", "[secret]"),
        Change("workersMax", "2", "5"),
    )
    assert exit_code([result]) == 2


def test_secret_values_are_never_printed():
    result = classify("dev", DRIFTED_STACK)
    reports = [text_report([result]), markdown_report(result), json_report([result])]
    for report in reports:
        assert OLD_SECRET not in report and NEW_SECRET not in report
        assert "[secret]" in report


def test_no_drift_and_errors():
    clean = classify("prod", CLEAN_STACK)
    assert clean.drifted == [] and exit_code([clean]) == 0
    assert text_report([clean]) == "prod: no drift"
    broken = StackDrift("prod", error="passphrase missing: set PULUMI_CONFIG_PASSPHRASE")
    assert exit_code([clean, broken]) == 1  # an unchecked stack is never "no drift"
    assert exit_code([classify("dev", DRIFTED_STACK), broken]) == 1
    assert "could not be checked: passphrase missing" in text_report([broken])
    assert "Could not be checked" in markdown_report(broken)


def test_the_markdown_is_the_same_from_run_to_run():
    first = markdown_report(classify("dev", DRIFTED_STACK))
    shuffled = list(DRIFTED_STACK)
    random.Random(4).shuffle(shuffled)
    assert markdown_report(classify("dev", shuffled)) == first
    assert first.startswith("## Drift in stack `dev`\n\n2 drifted, 1 deleted out of band, ")
    assert "| api-service | `gcp:cloudrunv2/service:Service` | drifted |" in first
    assert "| database-instance | `gcp:sql/databaseInstance:DatabaseInstance` | deleted" in first


def test_text_and_json_reports():
    result = classify("dev", DRIFTED_STACK)
    text = text_report([result])
    assert text.splitlines()[0] == (
        "dev: 2 drifted, 1 deleted out of band, 1 created out of band, 2 unchanged"
    )
    assert "    workersMax: 2 -> 5" in text
    [parsed] = json.loads(json_report([result]))
    assert parsed["stack"] == "dev" and parsed["exit_code"] == 2 and parsed["error"] is None
    assert {r["status"] for r in parsed["resources"]} == {
        "unchanged",
        "drifted",
        "deleted",
        "created",
    }


def test_the_automation_api_events_classify_as_the_cli_json_does():
    """The seam turns the SDK's parsed events back into the CLI's JSON steps."""
    from pulumi.automation.events import EngineEvent

    from stacks.workspace import _step

    parsed = [EngineEvent.from_json(event) for event in DRIFTED_STACK]
    steps = [
        {"resourcePreEvent": {"metadata": _step(event.resource_pre_event.metadata)}}
        for event in parsed
        if event.resource_pre_event is not None
    ]
    assert classify("dev", steps) == classify("dev", DRIFTED_STACK)
