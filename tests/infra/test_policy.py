"""The policies: every stack's plan passes them, and each rule catches what it is for."""

import pytest

from infra.plan import run_program
from infra.policy.rules import RULES, SECRET_SIG, PolicyConfig, check

SERVICE = "gcp:cloudrunv2/service:Service"


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_every_stack_passes(stack):
    # Every stack file sets api.public: true (the API authenticates with its own keys).
    assert check(run_program(stack), PolicyConfig(public_api=True)) == []


DEFAULTS = PolicyConfig()


def violations(typ: str, props: dict, config: PolicyConfig = DEFAULTS) -> list[str]:
    return [message for rule in RULES.values() for message in rule(typ, props, config)]


@pytest.mark.parametrize(
    ("typ", "props", "words"),
    [
        (
            "gcp:storage/bucket:Bucket",
            {"publicAccessPrevention": "inherited", "labels": {"env": "d", "stack": "d"}},
            "public access prevention",
        ),
        ("gcp:storage/bucketIAMMember:BucketIAMMember", {"member": "allUsers"}, "allUsers"),
        (
            "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
            {"member": "allAuthenticatedUsers"},
            "api.public is false",
        ),
        (
            SERVICE,
            {"invokerIamDisabled": True, "labels": {"env": "dev", "stack": "dev"}},
            "invoker IAM is disabled",
        ),
        (
            SERVICE,
            {
                "labels": {"env": "dev", "stack": "dev"},
                "template": {
                    "containers": [
                        {"envs": [{"name": "DATABASE_URL", "value": "postgresql://u:p@h/db"}]}
                    ]
                },
            },
            "DATABASE_URL looks secret",
        ),
        (
            SERVICE,
            {
                "labels": {"env": "prod", "stack": "prod"},
                "deletionProtection": False,
                "template": {"scaling": {"minInstanceCount": 0}},
            },
            "min instances >= 1",
        ),
        (
            SERVICE,
            {
                "labels": {"env": "prod", "stack": "prod"},
                "template": {"scaling": {"minInstanceCount": 1}},
            },
            "deletion protection",
        ),
        (
            "pulumi-python:dynamic:Resource",
            {"gpu": {"pools": ["ADA_80_PRO"]}, "workers": {"max": 1}},
            "needs allowPremiumGpus",
        ),
        (
            "pulumi-python:dynamic:Resource",
            {"gpu": {"pools": ["ADA_24"]}, "workers": {"max": 50}},
            "over the cap of 10",
        ),
        (
            "pulumi-python:dynamic:Resource",
            {"image": "worker:1", "env": {"SIGNING_KEY": "s3cret"}},
            "use a RunPod secret",
        ),
        (
            "pulumi-python:dynamic:Resource",
            {"image": "europe-west1-docker.pkg.dev/p/r/llm:dev", "env": {}},
            "europe-west1-docker.pkg.dev is private: set its registry credential",
        ),
        ("gcp:secretmanager/secret:Secret", {"labels": {"env": "dev"}}, "missing labels: stack"),
        (
            "gcp:sql/databaseInstance:DatabaseInstance",
            {"settings": {}},
            "missing labels: env, stack",
        ),
    ],
)
def test_each_rule_catches_its_case(typ, props, words):
    assert any(words in message for message in violations(typ, props)), violations(typ, props)


def test_what_a_stack_allows_is_allowed():
    public = PolicyConfig(public_api=True, allow_premium_gpus=True)
    assert (
        violations(
            "gcp:cloudrunv2/serviceIamMember:ServiceIamMember", {"member": "allUsers"}, public
        )
        == []
    )
    endpoint = {"gpu": {"pools": ["ADA_80_PRO"]}, "workers": {"max": 2}}
    assert violations("pulumi-python:dynamic:Resource", endpoint, public) == []
    only = PolicyConfig(allowed_gpu_pools=frozenset({"ADA_24"}))
    assert (
        "not in the allowed list" in violations("pulumi-python:dynamic:Resource", endpoint, only)[0]
    )


def test_secret_envelopes_are_opened_before_checking():
    resource = {
        "type": SERVICE,
        "name": "api",
        "inputs": {
            "labels": {"env": "dev", "stack": "dev"},
            "template": {
                "containers": [
                    {
                        "envs": [
                            {
                                "name": "API_TOKEN",
                                "value": {
                                    SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
                                    "value": "t0ken",
                                },
                            }
                        ]
                    }
                ]
            },
        },
    }
    [(policy, name, _)] = check([resource], PolicyConfig(public_api=True))
    assert (policy, name) == ("no-literal-secrets", "api")
