"""Tandem's policies: pure rules over resources (rules.py), run offline against the plan and as
a CrossGuard policy pack (`pulumi preview --policy-pack infra/policy`; the pack's own
requirements.txt is installed by Pulumi in the pack's virtualenv, so pulumi-policy is not a
dependency of the project)."""
