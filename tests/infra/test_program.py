"""The whole Pulumi program under mocks, per stack (the offline plan's run): what matters about
each stack's resources."""

import base64

import pytest

from infra.components.api_service import RUNTIME_ROLES
from infra.config import stack_settings
from infra.plan import STAND_IN, inventory, run_program
from infra.policy.rules import SECRET_SIG


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request):
    return request.param, run_program(request.param)


def of_type(resources, suffix: str) -> list[dict]:
    return [r["inputs"] for r in resources if r["type"].endswith(suffix)]


def test_every_secret_reaches_cloud_run_by_reference_only(stack):
    _, resources = stack
    [service] = of_type(resources, "cloudrunv2/service:Service")
    envs = service["template"]["containers"][0]["envs"]
    by_name = {env["name"]: env for env in envs}
    assert {"LLM_ENDPOINT_ID", "EMBED_ENDPOINT_ID", "CLIP_ENDPOINT_ID"} <= set(by_name)
    assert by_name["STORAGE_MODE"]["value"] == "gcs"
    assert by_name["GCS_BUCKET"]["value"].endswith("-uploads")
    for name in ("DATABASE_URL", "EMBEDDING_HMAC_SECRET", "RUNPOD_API_KEY"):
        assert "value" not in by_name[name]
        assert (
            by_name[name]["valueSource"]["secretKeyRef"]["version"] == "1"
        )  # pinned to the version written
    assert all(STAND_IN not in str(env.get("value", "")) for env in envs)


def test_the_runtime_account_has_exactly_its_roles(stack):
    _, resources = stack
    [account] = [
        a
        for a in of_type(resources, "serviceaccount/account:Account")
        if a["accountId"].endswith("-api")
    ]
    runtime = f"serviceAccount:{account['accountId']}@{account['project']}.iam.gserviceaccount.com"
    members = of_type(resources, "projects/iAMMember:IAMMember")
    assert sorted(m["role"] for m in members if m["member"] == runtime) == sorted(RUNTIME_ROLES)
    accessors = of_type(resources, "secretIamMember:SecretIamMember")
    assert len(accessors) == 3
    assert {a["member"] for a in accessors} == {runtime}
    assert {a["role"] for a in accessors} == {"roles/secretmanager.secretAccessor"}


def test_retention_runs_daily_as_the_api_with_only_a_run_grant(stack):
    name, resources = stack
    [job] = of_type(resources, "cloudrunv2/job:Job")
    [service] = of_type(resources, "cloudrunv2/service:Service")
    task = job["template"]["template"]
    [container] = task["containers"]
    assert container["commands"] + container["args"] == ["python", "-m", "app", "retention"]
    assert task["serviceAccount"] == service["template"]["serviceAccount"]
    api_env = service["template"]["containers"][0]["envs"]
    days = {
        "name": "RETENTION_RAW_DAYS",
        "value": str(stack_settings(name)["tandem:storage"]["retentionDays"]),
    }
    assert container["envs"] == [*api_env, days]  # secrets by reference, as the API's
    assert task["volumes"] == service["template"]["volumes"]
    assert job["labels"]["env"] and job["deletionProtection"] == (name == "prod")

    [schedule] = of_type(resources, "cloudscheduler/job:Job")
    assert schedule["schedule"] == "17 3 * * *" and schedule["timeZone"] == "Etc/UTC"
    target = schedule["httpTarget"]
    assert target["uri"].endswith(f"/jobs/tandem-{name}-retention:run")
    runner = f"serviceAccount:{target['oauthToken']['serviceAccountEmail']}"
    [grant] = of_type(resources, "jobIamMember:JobIamMember")
    assert grant == {**grant, "role": "roles/run.invoker", "member": runner}
    # The scheduler's account holds nothing else.
    members = [r["inputs"] for r in resources if "iammember" in r["type"].lower()]
    assert [m for m in members if m.get("member") == runner] == [grant]


def test_buckets_are_private_and_expire(stack):
    _, resources = stack
    [bucket] = of_type(resources, "storage/bucket:Bucket")
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["lifecycleRules"][0]["condition"]["age"] >= 1


def test_gpu_endpoints_get_the_hmac_secret_as_a_secret(stack):
    _, resources = stack
    dynamic = [r["inputs"] for r in resources if r["type"] == "pulumi-python:dynamic:Resource"]
    templates = [inputs for inputs in dynamic if "imageName" in inputs]
    assert len(templates) == 3  # llm, embed (the llm image with TASK=embed), clip
    for template in templates:
        assert SECRET_SIG in template["env"]  # the whole env is stored encrypted
        assert template["env"]["value"]["EMBEDDING_HMAC_SECRET"] == STAND_IN
    for inputs in dynamic:
        assert "apiKey" not in inputs  # the providers read it from the stack's config
        provider = base64.b64decode(inputs["__provider"]["value"])
        assert STAND_IN.encode() not in provider  # the serialised provider holds no key


@pytest.mark.parametrize(
    ("settings", "backup_time", "kept", "window"),
    [
        ({}, "02:00", 7, {"day": 7, "hour": 3, "updateTrack": "stable"}),
        (
            {"backupStartTime": "23:30", "backupsKept": 30, "maintenanceDay": 2},
            "23:30",
            30,
            {"day": 2, "hour": 3, "updateTrack": "stable"},
        ),
    ],
)
def test_cloud_sql_is_connector_only_backed_up_maintained_and_observed(
    settings, backup_time, kept, window
):
    database = stack_settings("dev")["tandem:database"] | settings
    resources = run_program("dev", stack_settings("dev") | {"tandem:database": database})
    [instance] = of_type(resources, "databaseInstance:DatabaseInstance")
    ip = instance["settings"]["ipConfiguration"]
    assert ip["sslMode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"  # the connector only
    backups = instance["settings"]["backupConfiguration"]
    assert backups["startTime"] == backup_time
    assert backups["backupRetentionSettings"]["retainedBackups"] == kept
    assert instance["settings"]["maintenanceWindow"] == window
    assert instance["settings"]["insightsConfig"]["queryInsightsEnabled"] is True
    flags = instance["settings"]["databaseFlags"]
    assert {"name": "cloudsql.iam_authentication", "value": "on"} in flags


def test_prod_is_protected_and_warm():
    resources = run_program("prod")
    [instance] = of_type(resources, "databaseInstance:DatabaseInstance")
    assert instance["deletionProtection"] is True
    assert instance["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert instance["settings"]["availabilityType"] == "REGIONAL"
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert service["deletionProtection"] is True
    assert service["template"]["scaling"]["minInstanceCount"] >= 1
    endpoints = [r["inputs"] for r in resources if r["name"].endswith("-endpoint")]
    assert all(e["workersMin"] >= 1 for e in endpoints)


def test_dev_scales_to_zero():
    resources = run_program("dev")
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert service["template"]["scaling"]["minInstanceCount"] == 0
    assert service["deletionProtection"] is False
    endpoints = [r["inputs"] for r in resources if r["name"].endswith("-endpoint")]
    assert [e["workersMin"] for e in endpoints] == [0, 0, 0]
    assert of_type(resources, "serviceIamMember:ServiceIamMember")[0]["member"] == "allUsers"


def test_ci_can_deploy_only_from_its_repository(stack):
    _, resources = stack
    [provider] = of_type(resources, "workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    assert provider["attributeCondition"] == "assertion.repository == 'my-org/tandem'"
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    [binding] = [
        m
        for m in of_type(resources, "serviceaccount/iAMMember:IAMMember")
        if m["role"] == "roles/iam.workloadIdentityUser"
    ]
    assert binding["member"].endswith("/attribute.repository/my-org/tandem")


def test_readiness_errors_latency_and_the_database_are_watched(stack):
    name, resources = stack
    [uptime] = of_type(resources, "uptimeCheckConfig:UptimeCheckConfig")
    assert uptime["httpCheck"]["path"] == "/readiness"  # the API can serve, not just live
    policies = {
        p["displayName"].split(": ", 1)[1]: p["conditions"][0]["conditionThreshold"]
        for p in of_type(resources, "alertPolicy:AlertPolicy")
    }
    assert set(policies) == {
        "uptime check on /readiness failing",
        "more than 5% of responses are 5xx",
        "95th percentile latency above 2000 ms",
        "Cloud SQL cpu above 80%",
        "Cloud SQL disk above 85%",
    }
    errors = policies["more than 5% of responses are 5xx"]
    assert 'response_code_class="5xx"' in errors["filter"]
    assert errors["thresholdValue"] == 0.05 and "denominatorFilter" in errors
    [instance] = of_type(resources, "databaseInstance:DatabaseInstance")
    database_id = f'database_id="{instance["project"]}:database-instance"'  # the mocks' name
    assert database_id in policies["Cloud SQL cpu above 80%"]["filter"]
    assert "database/disk/utilization" in policies["Cloud SQL disk above 85%"]["filter"]
    channels = of_type(resources, "notificationChannel:NotificationChannel")
    assert len(channels) == (1 if name == "prod" else 0)  # dev names no one: `up` warns


def test_alert_thresholds_are_settings():
    settings = stack_settings("dev") | {
        "tandem:monitoring": {"max5xxRatio": 0.2, "latencyP95Ms": 500},
        "tandem:database": {"provider": "supabase"},
        "tandem:supabaseDatabaseUrl": {"secure": "v1:encrypted"},
    }
    names = {
        p["displayName"] for p in of_type(run_program("dev", settings), "alertPolicy:AlertPolicy")
    }
    assert names == {
        "tandem-dev: uptime check on /readiness failing",
        "tandem-dev: more than 20% of responses are 5xx",
        "tandem-dev: 95th percentile latency above 500 ms",
    }  # no Cloud SQL instance of its own: no database alerts


def test_a_review_stack_uses_the_dev_instance_and_its_own_database():
    resources = run_program("pr-7")
    assert of_type(resources, "databaseInstance:DatabaseInstance") == []
    [reference] = of_type(resources, "StackReference")
    assert reference["name"].endswith("/tandem/dev")
    [database] = of_type(resources, "sql/database:Database")
    assert database["name"] == "tandem_pr_7"
    assert database["instance"] == "dev-instance"
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert service["deletionProtection"] is False
    assert service["labels"] == {"env": "review", "stack": "pr-7", "app": "tandem", "ttl": "72h"}
    endpoints = [r["inputs"] for r in resources if r["name"].endswith("-endpoint")]
    assert [e["workersMax"] for e in endpoints] == [1, 1, 1]
    assert of_type(resources, "workloadIdentityPool:WorkloadIdentityPool") == []


def test_a_first_deploy_has_its_order_spelled_out(stack):
    """Every GCP resource waits for the project APIs; the service and the retention job wait
    for every grant of the account they run as (Cloud Run checks secret access when a revision
    deploys) and read each secret at the version this stack wrote."""
    name, _ = stack
    items = inventory(run_program(name))
    apis = {i["name"] for i in items if i["type"] == "gcp:projects/service:Service"}
    assert {"services-cloudresourcemanager", "services-serviceusage", "services-run"} <= apis
    for item in items:
        if item["type"].startswith(("gcp:", "docker-build:")) and item["name"] not in apis:
            assert "services" in item.get("after", []), item["name"]
    grants = {i["name"] for i in items if i["name"].endswith("-accessor")}
    grants |= {
        i["name"] for i in items if i["name"].startswith("api-") and "IAMMember" in i["type"]
    }
    assert len(grants) == 8  # 3 secrets, 3 project roles, signing as itself, the bucket
    for runs in ("api-service", "jobs-retention"):
        [item] = [i for i in items if i["name"] == runs]
        assert grants <= set(item["after"]), runs
    [service] = of_type(stack[1], "cloudrunv2/service:Service")
    refs = [
        e["valueSource"]["secretKeyRef"]
        for e in service["template"]["containers"][0]["envs"]
        if "valueSource" in e
    ]
    assert refs and {ref["version"] for ref in refs} == {"1"}  # pinned, never "latest"


@pytest.mark.parametrize("name", ["dev", "prod", "pr-7"])
def test_the_api_keeps_its_cpu_between_requests_for_the_job_poller(name):
    [service] = of_type(run_program(name), "cloudrunv2/service:Service")
    assert service["template"]["containers"][0]["resources"]["cpuIdle"] is False


def test_a_network_volume_holds_the_model_cache():
    gpu = stack_settings("dev")["tandem:gpu"]
    settings = stack_settings("dev") | {
        "tandem:gpu": gpu | {"llm": gpu["llm"] | {"networkVolumeId": "vol-1"}}
    }
    templates = {
        r["name"]: r["inputs"]["env"]["value"]
        for r in run_program("dev", settings)
        if r["name"].endswith("-template")
    }
    assert templates["tandem-dev-llm-template"]["HF_HOME"] == "/runpod-volume/huggingface"
    assert "HF_HOME" not in templates["tandem-dev-clip-template"]  # no volume there


def test_the_database_goes_before_its_user_on_teardown():
    """Postgres cannot drop a role that owns objects: the database (and the tables the user
    made in it) is created after the user, so destroyed before it."""
    for stack in ("pr-7", "dev"):
        [database] = [r for r in run_program(stack) if r["type"] == "gcp:sql/database:Database"]
        assert "database-user" in database["after"]


def test_prod_uploads_do_not_outlive_their_retention_as_old_versions():
    buckets = {
        stack: of_type(run_program(stack), "storage/bucket:Bucket")[0] for stack in ("dev", "prod")
    }
    assert buckets["prod"]["versioning"]["enabled"] is True
    rules = [rule["condition"] for rule in buckets["prod"]["lifecycleRules"]]
    assert {"daysSinceNoncurrentTime": 7} in rules  # storage.noncurrentDays
    assert [rule["condition"] for rule in buckets["dev"]["lifecycleRules"]] == [{"age": 30}]


def test_a_supabase_stack_has_no_cloud_sql_and_keeps_its_url_secret():
    settings = stack_settings("dev") | {
        "tandem:database": {"provider": "supabase"},
        "tandem:supabaseDatabaseUrl": {"secure": "v1:encrypted"},
    }
    resources = run_program("dev", settings)
    assert of_type(resources, "databaseInstance:DatabaseInstance") == []
    assert of_type(resources, "sql/database:Database") == []
    [version] = [
        r["inputs"]
        for r in resources
        if r["type"].endswith("SecretVersion") and r["name"] == "secrets-database-url-version"
    ]
    assert SECRET_SIG in version["secretData"]
    assert version["secretData"]["value"] == STAND_IN
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert service["template"]["volumes"] == []  # no Cloud SQL socket to mount
    env = {e["name"]: e for e in service["template"]["containers"][0]["envs"]}
    assert "SUPABASE_SERVICE_KEY" not in env  # only when the stack sets the key


def test_a_supabase_service_key_is_a_secret_only_the_api_reads():
    settings = stack_settings("dev") | {
        "tandem:database": {"provider": "supabase"},
        "tandem:supabaseDatabaseUrl": {"secure": "v1:encrypted"},
        "tandem:supabaseServiceKey": {"secure": "v1:encrypted"},
    }
    resources = run_program("dev", settings)
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e for e in service["template"]["containers"][0]["envs"]}
    reference = env["SUPABASE_SERVICE_KEY"]["valueSource"]["secretKeyRef"]
    assert "value" not in env["SUPABASE_SERVICE_KEY"] and reference["version"] == "1"
    accessors = of_type(resources, "secretIamMember:SecretIamMember")
    assert len(accessors) == 4 and len({a["member"] for a in accessors}) == 1


def test_a_network_volume_and_registry_auth_reach_runpod():
    settings = stack_settings("dev")
    llm = settings["tandem:gpu"]["llm"] | {"networkVolumeId": "vol-1", "registryAuthId": "ra-1"}
    resources = run_program("dev", settings | {"tandem:gpu": settings["tandem:gpu"] | {"llm": llm}})
    runpod = {r["name"]: r["inputs"] for r in resources if r["type"].endswith("dynamic:Resource")}
    assert runpod["tandem-dev-llm-endpoint"]["networkVolumeId"] == "vol-1"
    assert runpod["tandem-dev-llm-template"]["containerRegistryAuthId"] == "ra-1"
    assert runpod["tandem-dev-clip-endpoint"].get("networkVolumeId") is None
