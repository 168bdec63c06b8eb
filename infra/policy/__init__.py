"""Tandem's policies: pure rules over resources (rules.py), run offline against the plan and as
a CrossGuard policy pack (`pulumi preview --policy-pack infra/policy`)."""
