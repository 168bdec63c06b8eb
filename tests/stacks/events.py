"""Engine events of a refresh preview, in the shapes the Pulumi CLI documents and emits
(`pulumi refresh --preview-only --event-log`, the Automation API's `on_event`):
`EngineEvent`, `ResourcePreEvent`, `StepEventMetadata`, `StepEventStateMetadata` and
`PropertyDiff` in pulumi/pulumi `pkg/apitype/events.go` (mirrored by the Python SDK's
`pulumi/automation/events.py`, whose `OpType` lists the step ops). Secret values appear as
Pulumi's secret envelope `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
"value": ...}` when shown, or as "[secret]" when masked."""

SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
OLD_SECRET, NEW_SECRET = "hmac-old-0123456789", "hmac-new-9876543210"
PREFIX = "urn:pulumi:dev::tandem::"


def state(kind: str, name: str, outputs: dict, resource_id: str = "id-1") -> dict:
    return {
        "type": kind,
        "urn": f"{PREFIX}{kind}::{name}",
        "id": resource_id,
        "parent": f"{PREFIX}pulumi:pulumi:Stack::tandem-dev",
        "inputs": {},
        "outputs": outputs,
        "provider": "",
    }


def step(op: str, kind: str, name: str, old: dict | None, new: dict | None, **extra) -> dict:
    """One `resourcePreEvent` engine event."""
    metadata = {
        "op": op,
        "urn": f"{PREFIX}{kind}::{name}",
        "type": kind,
        "old": old,
        "new": new,
        "provider": f"{PREFIX}pulumi:providers:gcp::default::0",
        **extra,
    }
    return {"sequence": 0, "timestamp": 1763900000, "resourcePreEvent": {"metadata": metadata}}


SERVICE = "gcp:cloudrunv2/service:Service"
BUCKET = "gcp:storage/bucket:Bucket"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
RUNPOD = "pulumi-python:dynamic:Resource"
SECRET = "gcp:secretmanager/secret:Secret"

service_old = {"template": {"scaling": {"minInstanceCount": 0}}, "uri": "https://api"}
service_new = {"template": {"scaling": {"minInstanceCount": 3}}, "uri": "https://api"}
endpoint_old = {"workersMax": 2, "env": {**SIG, "value": {"HMAC": OLD_SECRET}}}
endpoint_new = {"workersMax": 5, "env": {**SIG, "value": {"HMAC": NEW_SECRET}}}

DRIFTED_STACK = [
    {"sequence": 0, "timestamp": 1763900000, "preludeEvent": {"config": {}}},
    step("same", "pulumi:pulumi:Stack", "tandem-dev", None, None),
    step("same", "pulumi:providers:gcp", "default", None, None),
    step("same", BUCKET, "uploads", state(BUCKET, "uploads", {"name": "b"}), None),
    # An out-of-band edit, reported with its detailed diff.
    step(
        "update",
        SERVICE,
        "api-service",
        state(SERVICE, "api-service", service_old),
        state(SERVICE, "api-service", service_new),
        diffs=["template"],
        detailedDiff={
            "template.scaling.minInstanceCount": {"diffKind": "update", "inputDiff": False}
        },
    ),
    # A refresh step without diffs: the outputs differ (workers and a secret env value).
    step(
        "refresh",
        RUNPOD,
        "tandem-dev-llm-endpoint",
        state(RUNPOD, "tandem-dev-llm-endpoint", endpoint_old),
        state(RUNPOD, "tandem-dev-llm-endpoint", endpoint_new),
    ),
    # A refresh step whose outputs are the same: no drift.
    step(
        "refresh",
        SECRET,
        "secrets-hmac",
        state(SECRET, "secrets-hmac", {"secretId": "h"}),
        state(SECRET, "secrets-hmac", {"secretId": "h"}),
    ),
    step("delete", SQL, "database-instance", state(SQL, "database-instance", {"name": "db"}), None),
    step("create", BUCKET, "stray", None, state(BUCKET, "stray", {"name": "s"})),
    {
        "sequence": 9,
        "timestamp": 1763900001,
        "diagnosticEvent": {"message": "x", "severity": "info"},
    },
    {"sequence": 10, "timestamp": 1763900002, "summaryEvent": {"resourceChanges": {"update": 2}}},
]

CLEAN_STACK = [
    step("same", BUCKET, "uploads", state(BUCKET, "uploads", {"name": "b"}), None),
    step(
        "refresh",
        SERVICE,
        "api-service",
        state(SERVICE, "api-service", service_old),
        state(SERVICE, "api-service", service_old),
    ),
]
