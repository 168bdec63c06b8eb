"""The whole Pulumi program under mocks, per stack (the offline plan's run): what matters about
each stack's resources."""

import base64

import cel
import pytest

from app.core import keys
from gpu_worker.common.worker_types import WORKER_TYPES
from infra.components.api_service import RUNTIME_ROLES
from infra.config import ConfigError, stack_settings
from infra.plan import PROJECT_NUMBER, STAND_IN, inventory, run_program
from infra.policy.rules import SECRET_SIG


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request):
    return request.param, run_program(request.param)


def of_type(resources, suffix: str) -> list[dict]:
    return [r["inputs"] for r in resources if r["type"].endswith(suffix)]


def job(resources, purpose: str) -> dict:
    """The Cloud Run job `tandem-<stack>-<purpose>` (retention, migrate)."""
    [found] = [j for j in of_type(resources, "cloudrunv2/job:Job") if j["name"].endswith(purpose)]
    return found


def test_every_secret_reaches_cloud_run_by_reference_only(stack):
    _, resources = stack
    [service] = of_type(resources, "cloudrunv2/service:Service")
    envs = service["template"]["containers"][0]["envs"]
    by_name = {env["name"]: env for env in envs}
    assert {"LLM_ENDPOINT_ID", "EMBED_ENDPOINT_ID", "CLIP_ENDPOINT_ID"} <= set(by_name)
    assert by_name["STORAGE_MODE"]["value"] == "gcs"
    assert by_name["GCS_BUCKET"]["value"].endswith("-uploads")
    for name in (
        "DATABASE_URL",
        "SIGNING_SECRET",
        "RUNPOD_API_KEY",
        "TENANT_KEY_ENCRYPTION_KEYS",
    ):
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
    assert len(accessors) == 4
    assert {a["member"] for a in accessors} == {runtime}
    assert {a["role"] for a in accessors} == {"roles/secretmanager.secretAccessor"}


def test_retention_runs_daily_as_the_api_with_only_a_run_grant(stack):
    name, resources = stack
    retention = job(resources, "retention")
    [service] = of_type(resources, "cloudrunv2/service:Service")
    task = retention["template"]["template"]
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
    assert retention["labels"]["env"] and retention["deletionProtection"] == (name == "prod")

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


def test_gpu_workers_read_their_derived_key_from_a_runpod_secret(stack):
    """The workers hold the key derived for them (app/core/keys.py), never the stack's signing
    secret; and vLLM's own cap on `n` is the API's."""
    name, resources = stack
    dynamic = {
        r["name"]: r["inputs"] for r in resources if r["type"] == "pulumi-python:dynamic:Resource"
    }
    secret = dynamic[f"tandem-{name}-hmac"]
    assert secret["name"] == f"tandem-{name}-hmac"
    assert SECRET_SIG in secret["value"]  # encrypted
    assert secret["value"]["value"] == keys.derive(STAND_IN, keys.WORKERS) != STAND_IN
    containers = [inputs for inputs in dynamic.values() if "image" in inputs]
    # Templates and endpoints (each carries its container) of llm, embed (the llm image with
    # TASK=embed), clip, transcribe and, in dev, imagegen
    assert len(containers) == 2 * (5 if name == "dev" else 4)
    for container in containers:
        env = container["env"]["value"]
        assert env["SIGNING_KEY"] == f"{{{{ RUNPOD_SECRET_tandem-{name}-hmac }}}}"
        assert "EMBEDDING_HMAC_SECRET" not in env and "SIGNING_SECRET" not in env
        if "/llm:" in container["image"]:
            assert env["VLLM_MAX_N_SEQUENCES"] == "8"
        assert STAND_IN not in str(env)  # the value is RunPod's to fill in, never a template's
        assert len(env["TANDEM_VALUES_FINGERPRINT"]) == 16  # a new value: a new release
    for inputs in dynamic.values():
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
    endpoints = {r["name"]: r["inputs"] for r in resources if r["name"].endswith("-endpoint")}
    # Requests wait on chat, CLIP and embeddings: warm. Transcription scales to zero (an hour
    # of audio is a job, and a cold start is small beside it); prod generates no images.
    warm = {name: e["workers"]["min"] >= 1 for name, e in endpoints.items()}
    served = [n for n in WORKER_TYPES if n != "imagegen"]
    assert warm == {f"tandem-prod-{n}-endpoint": n != "transcribe" for n in served}


def test_dev_scales_to_zero():
    resources = run_program("dev")
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert service["template"]["scaling"]["minInstanceCount"] == 0
    assert service["deletionProtection"] is False
    endpoints = [r["inputs"] for r in resources if r["name"].endswith("-endpoint")]
    assert [e["workers"]["min"] for e in endpoints] == [0] * len(WORKER_TYPES)
    assert of_type(resources, "serviceIamMember:ServiceIamMember")[0]["member"] == "allUsers"


REPO, REPO_ID = "my-org/tandem", "123456789"  # Pulumi.dev.yaml and Pulumi.prod.yaml
WORKFLOWS = f"{REPO}/.github/workflows"


def github_token(workflow: str, ref: str, sub: str = "", repository_id: str = REPO_ID) -> dict:
    """The claims of a GitHub Actions OIDC token that matter here."""
    return {
        "repository_id": repository_id,
        "ref": ref,
        "job_workflow_ref": f"{WORKFLOWS}/{workflow}@{ref}",
        "sub": sub or f"repo:{REPO}:ref:{ref}",
    }


def sts_access(provider: dict, claims: dict) -> str | None:
    """What Google's STS makes of a token: refused (None) by the provider's condition, or the
    `attribute.access` its mapping gives (CEL, evaluated as STS does)."""
    if not cel.evaluate(provider["attributeCondition"], {"assertion": claims}):
        return None
    return cel.evaluate(provider["attributeMapping"]["attribute.access"], {"assertion": claims})


def purpose_of(account_name: str) -> str:
    """`api` of projects/p/serviceAccounts/tandem-dev-api@p.iam.gserviceaccount.com."""
    return account_name.rsplit("/", 1)[-1].split("@")[0].rsplit("-", 1)[-1]


RELEASE = github_token("deploy.yml", "refs/tags/v1.4.0", f"repo:{REPO}:environment:prod")
PUSH_TO_MAIN = github_token("deploy.yml", "refs/heads/main", f"repo:{REPO}:environment:dev")
DRIFT = github_token("drift.yml", "refs/heads/main")
PULL_REQUEST = github_token("preview.yml", "refs/pull/7/merge", f"repo:{REPO}:pull_request")


@pytest.mark.parametrize(
    ("stack", "token", "access"),
    [
        ("prod", RELEASE, "deploy"),
        ("prod", DRIFT, "read"),
        ("prod", PULL_REQUEST, None),  # pull requests get nothing on prod
        ("prod", PUSH_TO_MAIN, None),
        ("prod", {**RELEASE, "sub": f"repo:{REPO}:ref:refs/tags/v1.4.0"}, None),  # no environment
        ("prod", {**RELEASE, "repository_id": "987"}, None),  # same name, another repository
        ("dev", PUSH_TO_MAIN, "deploy"),
        ("dev", PULL_REQUEST, "deploy"),  # review stacks
        ("dev", DRIFT, "read"),
        ("dev", {**PUSH_TO_MAIN, "repository_id": "987"}, None),
    ],
)
def test_github_tokens_get_the_identity_their_workflow_may_have(stack, token, access):
    [provider] = of_type(
        run_program(stack), "workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
    )
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    assert sts_access(provider, token) == access


def test_the_deployer_cannot_make_itself_owner_and_can_refresh_what_it_owns(stack):
    _, resources = stack
    accounts = {a["accountId"].rsplit("-", 1)[-1]: a for a in of_type(resources, "account:Account")}
    email = "serviceAccount:{accountId}@{project}.iam.gserviceaccount.com"
    deployer, reader = (email.format(**accounts[a]) for a in ("deployer", "reader"))
    project_roles = {
        m["role"]: m
        for m in of_type(resources, "projects/iAMMember:IAMMember")
        if m["member"] == deployer
    }
    assert "roles/iam.serviceAccountAdmin" not in project_roles
    assert "roles/iam.serviceAccountUser" not in project_roles
    assert "roles/owner" not in project_roles and "roles/editor" not in project_roles
    assert {"roles/iam.workloadIdentityPoolViewer", "roles/iam.serviceAccountViewer"} <= set(
        project_roles
    )
    condition = project_roles["roles/resourcemanager.projectIamAdmin"]["condition"]["expression"]
    assert condition == (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
        f".hasOnly([{', '.join(repr(role) for role in RUNTIME_ROLES)}])"
    )
    # Account administration and acting as: on the workload accounts, one by one.
    on_accounts = [
        m
        for m in of_type(resources, "serviceaccount/iAMMember:IAMMember")
        if m["member"] == deployer
    ]
    granted = {(purpose_of(m["serviceAccountId"]), m["role"]) for m in on_accounts}
    assert granted == {
        (purpose, role)
        for purpose in ("api", "jobs", "pull")
        for role in ("roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser")
    } | {("pull", "roles/iam.serviceAccountKeyAdmin")}
    reader_roles = {
        m["role"]
        for m in of_type(resources, "projects/iAMMember:IAMMember")
        if m["member"] == reader
    }
    assert not any(role.endswith(("admin", "Admin", "editor", "Editor")) for role in reader_roles)
    impersonation = {
        m["member"].rsplit("/", 2)[-2:][1]: m["serviceAccountId"]
        for m in of_type(resources, "serviceaccount/iAMMember:IAMMember")
        if m["role"] == "roles/iam.workloadIdentityUser"
    }
    assert set(impersonation) == {"deploy", "read"}
    assert impersonation["deploy"].endswith(deployer.removeprefix("serviceAccount:"))


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
        "tandem:supabaseCaCert": {"secure": "v1:encrypted"},
    }
    names = {
        p["displayName"] for p in of_type(run_program("dev", settings), "alertPolicy:AlertPolicy")
    }
    assert names == {
        "tandem-dev: uptime check on /readiness failing",
        "tandem-dev: more than 20% of responses are 5xx",
        "tandem-dev: 95th percentile latency above 500 ms",
    }  # no Cloud SQL instance of its own: no database alerts


PROJECT_LEVEL = (
    "projects/service:Service",
    "artifactregistry/repository:Repository",
    "serviceaccount/account:Account",
    "serviceaccount/key:Key",
    "projects/iAMMember:IAMMember",
    "databaseInstance:DatabaseInstance",
    "workloadIdentityPool:WorkloadIdentityPool",
    "alertPolicy:AlertPolicy",
)


def test_a_review_stack_builds_its_api_on_what_dev_already_has():
    resources = run_program("pr-7")
    for kind in PROJECT_LEVEL:
        assert of_type(resources, kind) == [], kind
    [reference] = of_type(resources, "StackReference")
    assert reference["name"].endswith("/tandem/dev")
    [database] = of_type(resources, "sql/database:Database")
    assert (database["name"], database["instance"]) == ("tandem_pr_7", "dev-instance")
    [user] = of_type(resources, "sql/user:User")
    assert user["deletionPolicy"] == "ABANDON"  # teardown never stops at a role Postgres keeps
    [image] = of_type(resources, "docker-build:index:Image")  # the API's, into dev's repository
    assert image["tags"] == ["europe-west1-docker.pkg.dev/base-project/tandem-dev/api:pr-7"]
    assert image["dockerfile"]["location"].endswith("app/Dockerfile")
    assert [r for r in resources if r["type"].endswith("dynamic:Resource")] == []  # dev's GPUs
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e.get("value") for e in service["template"]["containers"][0]["envs"]}
    assert env["LLM_ENDPOINT_ID"] == "dev-llm-endpoint-id"
    assert env["CLIP_ENDPOINT_ID"] == "dev-clip-endpoint-id"
    assert (
        service["template"]["serviceAccount"]
        == "tandem-dev-api@base-project.iam.gserviceaccount.com"
    )
    assert service["deletionProtection"] is False
    assert service["labels"] == {"env": "review", "stack": "pr-7", "app": "tandem", "ttl": "72h"}
    [version] = [r for r in resources if r["name"] == "secrets-hmac-secret-version"]
    assert version["inputs"]["secretData"]["value"] == STAND_IN  # dev's, which its workers check
    assert of_type(resources, "randomPassword:RandomPassword") == [
        {"length": 32, "special": False}
    ]  # the database password only: no HMAC secret of its own


def test_a_review_stack_can_have_gpu_endpoints_of_its_own():
    settings = stack_settings("pr-7") | {"tandem:ownGpuEndpoints": True}
    resources = run_program("pr-7", settings)
    images = {i["dockerfile"]["location"].split("/")[-2]: i for i in of_type(resources, "Image")}
    assert sorted(images) == ["app", "clip", "imagegen", "llm", "transcribe"]  # dev's endpoints
    assert images["llm"]["tags"] == ["europe-west1-docker.pkg.dev/base-project/tandem-dev/llm:pr-7"]
    runpod = {r["name"]: r["inputs"] for r in resources if r["type"].endswith("dynamic:Resource")}
    assert sorted(runpod) == sorted(
        [
            "tandem-pr-7-hmac",  # its own HMAC secret, on RunPod
            "tandem-pr-7-deployments",  # its API deploys on its llm image: removed with it
            *(f"tandem-pr-7-{n}-{kind}" for n in WORKER_TYPES for kind in ("endpoint", "template")),
        ]
    )
    assert runpod["tandem-pr-7-llm-endpoint"]["workers"]["max"] == 1
    assert runpod["tandem-pr-7-llm-endpoint"]["registry"] == "dev-registry-auth-id"
    assert runpod["tandem-pr-7-llm-template"]["registry"] == "dev-registry-auth-id"
    assert len(of_type(resources, "randomPassword:RandomPassword")) == 2  # its own HMAC secret
    for kind in PROJECT_LEVEL:
        assert of_type(resources, kind) == [], kind


def test_own_gpu_endpoints_are_a_review_stack_setting():
    with pytest.raises(ConfigError, match="ownGpuEndpoints is a review stack setting"):
        run_program("dev", stack_settings("dev") | {"tandem:ownGpuEndpoints": True})


def test_runpod_pulls_the_worker_images_with_a_read_only_key(stack):
    name, resources = stack
    [puller] = [
        a for a in of_type(resources, "account:Account") if a["accountId"].endswith("-pull")
    ]
    member = f"serviceAccount:{puller['accountId']}@{puller['project']}.iam.gserviceaccount.com"
    grants = [
        r
        for r in resources
        if r["type"].lower().endswith("iammember") and r["inputs"].get("member") == member
    ]
    assert [(g["type"], g["inputs"]["role"]) for g in grants] == [
        (
            "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
            "roles/artifactregistry.reader",
        )
    ]
    assert grants[0]["inputs"]["repository"].endswith(f"/repositories/tandem-{name}")
    [key] = of_type(resources, "serviceaccount/key:Key")
    assert key["serviceAccountId"].endswith(
        f"/{puller['accountId']}@{puller['project']}.iam.gserviceaccount.com"
    )
    runpod = {r["name"]: r for r in resources if r["type"].endswith("dynamic:Resource")}
    auth = runpod[f"tandem-{name}-registry-auth"]
    assert auth["inputs"]["username"] == "_json_key_base64"
    assert SECRET_SIG in auth["inputs"]["password"]  # the key, kept encrypted in the state
    assert auth["inputs"]["name"].startswith(f"tandem-{name}-artifact-registry-")
    for worker in ("llm", "embed", "clip"):
        for kind in ("template", "endpoint"):
            container = runpod[f"tandem-{name}-{worker}-{kind}"]["inputs"]
            assert container["image"].startswith(
                f"europe-west1-docker.pkg.dev/{puller['project']}/tandem-{name}/"
            )
            assert container["registry"] == f"tandem-{name}-registry-auth-id"


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
    assert len(grants) == 9  # 4 secrets, 3 project roles, signing as itself, the bucket
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


def test_network_volumes_hold_the_model_cache():
    gpu = stack_settings("dev")["tandem:gpu"]
    settings = stack_settings("dev") | {
        "tandem:gpu": gpu | {"llm": gpu["llm"] | {"networkVolumeIds": ["vol-eu", "vol-us"]}}
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
        "tandem:supabaseCaCert": {"secure": "v1:encrypted"},
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
    # TLS verified against Supabase's CA (a secret, by reference); the pooler's mode said.
    assert env["DATABASE_CA_CERT"]["valueSource"]["secretKeyRef"]["version"] == "1"
    assert "value" not in env["DATABASE_CA_CERT"]
    assert env["DATABASE_POOL_MODE"]["value"] == "session"


def test_a_supabase_service_key_is_a_secret_only_the_api_reads():
    settings = stack_settings("dev") | {
        "tandem:database": {"provider": "supabase"},
        "tandem:supabaseDatabaseUrl": {"secure": "v1:encrypted"},
        "tandem:supabaseCaCert": {"secure": "v1:encrypted"},
        "tandem:supabaseServiceKey": {"secure": "v1:encrypted"},
    }
    resources = run_program("dev", settings)
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e for e in service["template"]["containers"][0]["envs"]}
    reference = env["SUPABASE_SERVICE_KEY"]["valueSource"]["secretKeyRef"]
    assert "value" not in env["SUPABASE_SERVICE_KEY"] and reference["version"] == "1"
    accessors = of_type(resources, "secretIamMember:SecretIamMember")
    assert len(accessors) == 6 and len({a["member"] for a in accessors}) == 1


def test_network_volumes_and_another_registry_credential_reach_runpod():
    settings = stack_settings("dev")
    llm = settings["tandem:gpu"]["llm"] | {"networkVolumeIds": ["vol-1"], "registryAuthId": "ra-1"}
    resources = run_program("dev", settings | {"tandem:gpu": settings["tandem:gpu"] | {"llm": llm}})
    runpod = {r["name"]: r["inputs"] for r in resources if r["type"].endswith("dynamic:Resource")}
    assert runpod["tandem-dev-llm-endpoint"]["networkVolumes"] == ["vol-1"]
    assert runpod["tandem-dev-llm-template"]["registry"] == "ra-1"  # it wins
    assert runpod["tandem-dev-llm-endpoint"]["registry"] == "ra-1"
    assert runpod["tandem-dev-clip-template"]["registry"] == "tandem-dev-registry-auth-id"
    assert runpod["tandem-dev-clip-endpoint"].get("networkVolumeIds") is None


def test_a_private_ip_database_is_reached_through_its_network():
    database = stack_settings("dev")["tandem:database"] | {
        "privateNetwork": "projects/my-gcp-project/global/networks/tandem",
        "subnetwork": "tandem-europe-west1",
    }
    resources = run_program("dev", stack_settings("dev") | {"tandem:database": database})
    [instance] = of_type(resources, "databaseInstance:DatabaseInstance")
    ip = instance["settings"]["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == database["privateNetwork"]
    egress = {
        "networkInterfaces": [
            {"network": database["privateNetwork"], "subnetwork": "tandem-europe-west1"}
        ],
        "egress": "PRIVATE_RANGES_ONLY",
    }
    [service] = of_type(resources, "cloudrunv2/service:Service")
    for purpose in ("retention", "migrate"):
        assert job(resources, purpose)["template"]["template"]["vpcAccess"] == egress
    assert service["template"]["vpcAccess"] == egress


def test_a_public_ip_database_has_no_network_settings():
    resources = run_program("dev")
    [instance] = of_type(resources, "databaseInstance:DatabaseInstance")
    assert instance["settings"]["ipConfiguration"]["ipv4Enabled"] is True
    [service] = of_type(resources, "cloudrunv2/service:Service")
    assert "vpcAccess" not in service["template"]


@pytest.mark.parametrize(
    ("database", "words"),
    [
        (
            {"privateNetwork": "projects/p/global/networks/n"},
            "privateNetwork and subnetwork go together",
        ),
        ({"subnetwork": "s"}, "privateNetwork and subnetwork go together"),
        ({"privateNetwork": "default", "subnetwork": "s"}, "tandem:database.privateNetwork"),
        (
            {
                "provider": "supabase",
                "privateNetwork": "projects/p/global/networks/n",
                "subnetwork": "s",
            },
            "privateNetwork is a Cloud SQL setting",
        ),
    ],
)
def test_a_bad_network_setting_fails_before_anything_is_made(database, words):
    settings = stack_settings("dev")
    settings = settings | {"tandem:database": settings["tandem:database"] | database}
    with pytest.raises(ConfigError, match=words):
        run_program("dev", settings)


def test_supabase_storage_creates_no_bucket_and_gives_the_api_its_key_by_reference():
    settings = stack_settings("dev") | {
        "tandem:storage": {"provider": "supabase", "supabaseUrl": "https://abcd.supabase.co"},
        "tandem:supabaseServiceKey": {"secure": "v1:encrypted"},
    }
    resources = run_program("dev", settings)
    assert of_type(resources, "storage/bucket:Bucket") == []
    assert of_type(resources, "storage/bucketIAMMember:BucketIAMMember") == []
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e for e in service["template"]["containers"][0]["envs"]}
    values = {name: env[name].get("value") for name in env if "value" in env[name]}
    assert {
        "STORAGE_MODE": "supabase",
        "SUPABASE_URL": "https://abcd.supabase.co",
        "SUPABASE_BUCKET": "uploads",
        "STORAGE_PREFIX": "dev",  # stacks sharing the bucket keep to their own folder
    }.items() <= values.items()
    assert "GCS_BUCKET" not in env
    assert env["SUPABASE_SERVICE_KEY"]["valueSource"]["secretKeyRef"]["version"] == "1"
    [container] = job(resources, "retention")["template"]["template"]["containers"]
    assert {"name": "STORAGE_MODE", "value": "supabase"} in container["envs"]  # same bucket


@pytest.mark.parametrize(
    ("storage", "secrets", "words"),
    [
        ({"provider": "supabase"}, {}, "supabaseUrl is set with provider supabase"),
        ({"supabaseUrl": "https://abcd.supabase.co"}, {}, "supabaseUrl is set with provider"),
        (
            {"provider": "supabase", "supabaseUrl": "https://abcd.supabase.co"},
            {},
            "storage.provider supabase needs the secret tandem:supabaseServiceKey",
        ),
        (
            {"provider": "supabase", "supabaseUrl": "http://abcd.supabase.co"},
            {"tandem:supabaseServiceKey": {"secure": "v1:x"}},
            "tandem:storage.supabaseUrl",
        ),
    ],
)
def test_supabase_storage_settings_are_checked(storage, secrets, words):
    settings = stack_settings("dev") | {"tandem:storage": storage} | secrets
    with pytest.raises(ConfigError, match=words):
        run_program("dev", settings)


def test_migrations_run_as_a_deploy_step_before_the_new_revision(stack):
    """The migrate job runs as the API (image, account, env with secrets by reference, Cloud
    SQL mount); the deploy executes it once per image, waiting for it, and the service waits
    for that: a failed migration fails `pulumi up` before the service changes."""
    name, resources = stack
    migrate = job(resources, "migrate")
    [service] = of_type(resources, "cloudrunv2/service:Service")
    task, api = migrate["template"]["template"], service["template"]
    [container], [api_container] = task["containers"], api["containers"]
    assert container["commands"] + container["args"] == ["python", "-m", "app", "migrate"]
    assert container["image"] == api_container["image"]
    assert container["envs"] == api_container["envs"]
    assert (task["serviceAccount"], task["volumes"]) == (api["serviceAccount"], api["volumes"])
    assert task["maxRetries"] == 0 and migrate["deletionProtection"] == (name == "prod")

    [applied] = of_type(resources, "local:Command")
    assert applied["create"] == (
        f"gcloud run jobs execute tandem-{name}-migrate --project={migrate['project']} "
        "--region=europe-west1 --wait --quiet"
    )
    assert applied["triggers"] == [api_container["image"]]  # once per image
    items = {i["name"]: i for i in inventory(resources)}
    assert "api-migrations-applied" in items["api-service"]["after"]
    [command] = [r for r in resources if r["name"] == "api-migrations-applied"]
    assert "api-migrations-job" in command["inputs_from"]  # the job, with this image, first
    grants = {n for n in items if n.endswith("-accessor")}  # it reads the API's secrets
    assert grants <= set(items["api-migrations-job"]["after"])


def test_deployments_run_the_stacks_llm_worker_image(stack):
    _, resources = stack
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e.get("value") for e in service["template"]["containers"][0]["envs"]}
    templates = {r["name"]: r for r in resources if r["type"].endswith("dynamic:Resource")}
    llm = templates[f"tandem-{stack[0]}-llm-endpoint"]["inputs"]
    assert env["DEPLOYMENT_IMAGE"] == llm["image"]
    assert env["DEPLOYMENT_REGISTRY_AUTH_ID"] == llm["registry"]


def test_what_the_api_deploys_at_runpod_goes_with_the_stack_after_the_api(stack):
    """The API names what it makes for deployments with its stack's prefix, which the stack's
    ApiDeployments removes on destroy, once the API (its env naming the prefix) is gone."""
    name, resources = stack
    [service] = of_type(resources, "cloudrunv2/service:Service")
    env = {e["name"]: e.get("value") for e in service["template"]["containers"][0]["envs"]}
    [deployments] = [r for r in resources if r["name"] == f"tandem-{name}-deployments"]
    assert deployments["inputs"]["prefix"] == f"tandem-deploy-{name}"
    assert env["DEPLOYMENT_NAME_PREFIX"] == f"tandem-deploy-{name}"
    [record] = [r for r in resources if r["name"] == "api-service"]
    assert deployments["name"] in record["inputs_from"]  # so destroyed before it


def test_raising_the_tenant_key_generation_adds_a_kek_and_keeps_the_one_before():
    """Each generation's KEK is a resource of its own: a rotation makes the next and keeps the
    one before (it still opens what it sealed), and drops those older still."""

    def keks(generation: int) -> tuple[list[str], str]:
        settings = stack_settings("dev")
        settings["tandem:api"] = settings["tandem:api"] | {"tenantKeyGeneration": generation}
        resources = run_program("dev", settings)
        made = [r["name"] for r in resources if r["type"].endswith("randomBytes:RandomBytes")]
        [version] = [
            r for r in resources if r["name"] == "secrets-tenant-key-encryption-keys-version"
        ]
        return made, version["inputs"]["secretData"]["value"]

    assert keks(1) == (["secrets-kek-1"], f"g1:{STAND_IN}")
    assert keks(3) == (["secrets-kek-2", "secrets-kek-3"], f"g3:{STAND_IN},g2:{STAND_IN}")


def test_the_api_knows_its_public_address_from_the_stack(stack):
    """Deployments' workers call the API back, and RunPod posts finished jobs, at the API's
    own Cloud Run URL, never at the default 127.0.0.1."""
    name, resources = stack
    [service] = of_type(resources, "cloudrunv2/service:Service")
    by_name = {env["name"]: env for env in service["template"]["containers"][0]["envs"]}
    url = f"https://tandem-{name}-api-{PROJECT_NUMBER}.europe-west1.run.app"
    assert by_name["PUBLIC_URL"]["value"] == url
    public = stack_settings(name)["tandem:api"].get("public", False)
    assert by_name.get("WEBHOOK_BASE_URL", {}).get("value") == (url if public else None)
