"""Tandem's policies: pure rules over resources (rules.py), run offline against the plan and as
a CrossGuard policy pack (`pulumi preview --policy-pack infra/policy/analyzer`; the pack runs
on its own virtualenv, infra/policy/venv from requirements.txt, made by `make policy-venv`:
pulumi-policy pins a protobuf the project's GCP clients refuse)."""
