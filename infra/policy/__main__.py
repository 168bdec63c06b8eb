"""The CrossGuard policy pack: `pulumi preview --policy-pack infra/policy/analyzer`. Its config
(`--policy-pack-config`): publicApi, allowPremiumGpus, maxWorkers, allowedGpuPools for each
resource's policies; for `within-budget`, the stack's monthlyUsd and expected usage
(`python -m infra.cost policy-config --stack S` writes them from the stack's config)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pack runs from its folder

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.cost import Expected
from infra.policy.rules import RULES, PolicyConfig, within_budget

SCHEMA = PolicyConfigSchema(
    properties={
        "publicApi": {"type": "boolean", "default": False},
        "allowPremiumGpus": {"type": "boolean", "default": False},
        "maxWorkers": {"type": "integer", "default": 10},
        "allowedGpuPools": {"type": "array", "items": {"type": "string"}},
    }
)


def _validator(rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        settings = args.get_config()
        config = PolicyConfig(
            public_api=bool(settings.get("publicApi", False)),
            allow_premium_gpus=bool(settings.get("allowPremiumGpus", False)),
            max_workers=int(settings.get("maxWorkers", 10)),
            allowed_gpu_pools=frozenset(settings["allowedGpuPools"])
            if settings.get("allowedGpuPools")
            else None,
        )
        for message in rule(args.resource_type, args.props, config):
            report_violation(message, None)

    return validate


BUDGET_SCHEMA = PolicyConfigSchema(
    properties={"monthlyUsd": {"type": "number"}, "expected": {"type": "object"}}
)


def _within_budget(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    settings = args.get_config()
    if settings.get("monthlyUsd") is None or settings.get("expected") is None:
        return
    config = PolicyConfig(
        monthly_budget_usd=float(settings["monthlyUsd"]),
        expected=Expected(**settings["expected"]),
    )
    resources = [
        {"type": r.resource_type, "name": r.name, "inputs": r.props} for r in args.resources
    ]
    for message in within_budget(resources, config):
        report_violation(message, None)


PolicyPack(
    name="tandem",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *(
            ResourceValidationPolicy(
                name=name,
                description=(rule.__doc__ or name).strip().splitlines()[0],
                validate=_validator(rule),
                config_schema=SCHEMA,
            )
            for name, rule in RULES.items()
        ),
        StackValidationPolicy(
            name="within-budget",
            description=(within_budget.__doc__ or "").strip().splitlines()[0],
            validate=_within_budget,
            config_schema=BUDGET_SCHEMA,
        ),
    ],
)
