"""Drift: what a refresh preview (Automation API `preview_refresh`, `pulumi refresh
--preview-only`) says about each resource of a stack, and the report of it.

A refresh preview changes no state. The engine reads each resource from its provider and then
sends a `resOutputsEvent` (shapes in pulumi/pulumi `pkg/apitype/events.go`) whose step holds
the state before (`old`) and as read (`new`): `same` is no drift; `update` (or a replacement)
is drift, with the properties whose values differ (secret values are masked in the events, so
when nothing visible differs, the secret properties are the ones named); `delete`/`discard`
means the resource was deleted out of band. The `resourcePreEvent` sent before the read says
only that a refresh is coming, so it is not read. A refresh reads only the resources in the
state: what was created out of band is not seen. Secret values are never shown.
"""

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from infra.policy.rules import SECRET_SIG

Status = Literal["unchanged", "drifted", "deleted"]
SECRET = "[secret]"  # noqa: S105 - what is shown instead of a secret value
UNCHANGED_OPS = {"same", "read"}
DELETED_OPS = {"delete", "discard", "delete-replaced", "discard-replaced"}
LABELS = {"drifted": "drifted", "deleted": "deleted out of band"}


@dataclass(frozen=True)
class Change:
    path: str
    old: str  # shown values: JSON, shortened, or [secret]
    new: str


@dataclass(frozen=True)
class ResourceDrift:
    urn: str
    type: str
    name: str
    status: Status
    changes: tuple[Change, ...] = ()


@dataclass
class StackDrift:
    stack: str
    resources: list[ResourceDrift] = field(default_factory=list)
    error: str | None = None  # the stack could not be checked: never "no drift"

    @property
    def drifted(self) -> list[ResourceDrift]:
        return [r for r in self.resources if r.status != "unchanged"]


def _secret(value: Any) -> bool:
    return value == SECRET or (isinstance(value, dict) and SECRET_SIG in value)


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return SECRET
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _lookup(state: dict[str, Any] | None, path: str) -> tuple[Any, bool]:
    """The value at a property path (`a.b`, `a[0]`) of a state's outputs, and whether it or
    what holds it is secret."""
    value: Any = (state or {}).get("outputs") or {}
    secret = False
    for part in path.replace("]", "").replace("[", ".").split("."):
        secret = secret or _secret(value)
        if isinstance(value, dict) and SECRET_SIG in value:
            value = value.get("value")
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = None
    return value, secret or _secret(value)


def _changes(step: dict[str, Any]) -> tuple[Change, ...]:
    old, new = step.get("old"), step.get("new")
    before = (old or {}).get("outputs") or {}
    after = (new or {}).get("outputs") or {}
    keys = sorted(k for k in set(before) | set(after) if not k.startswith("__"))  # __provider
    paths = list(step.get("detailedDiff") or {}) or list(step.get("diffs") or [])
    paths = paths or [key for key in keys if before.get(key) != after.get(key)]
    if not paths:  # a change the engine saw behind masked secret values
        paths = [key for key in keys if _secret(before.get(key)) or _secret(after.get(key))]
    changes = []
    for path in sorted(paths):
        (was, old_secret), (now, new_secret) = _lookup(old, path), _lookup(new, path)
        secret = old_secret or new_secret
        for leaf, before_leaf, after_leaf in _leaf_changes(path, was, now, secret):
            changes.append(Change(leaf, _shown(before_leaf, secret), _shown(after_leaf, secret)))
    return tuple(changes)


def _leaf_changes(path: str, was: Any, now: Any, secret: bool) -> list[tuple[str, Any, Any]]:
    """A change of an object (an endpoint's `workers`) as the changes of its members
    (`workers.max: 1 -> 3`); anything else as it is."""
    if secret or not (isinstance(was, dict) and isinstance(now, dict)):
        return [(path, was, now)]
    return [
        leaf
        for key in sorted(set(was) | set(now))
        if was.get(key) != now.get(key)
        for leaf in _leaf_changes(f"{path}.{key}", was.get(key), now.get(key), secret)
    ]


def _resource(step: dict[str, Any]) -> ResourceDrift | None:
    urn, kind = step.get("urn", ""), step.get("type", "")
    if not step.get("provider") or kind.startswith("pulumi:providers:"):
        return None  # the stack, components and providers: nothing a refresh reads
    name = urn.rsplit("::", 1)[-1]
    op = step.get("op")
    if op in DELETED_OPS:
        return ResourceDrift(urn, kind, name, "deleted")
    changes = () if op in UNCHANGED_OPS else _changes(step)
    return ResourceDrift(urn, kind, name, "drifted" if changes else "unchanged", changes)


def classify(stack: str, events: Iterable[dict[str, Any]]) -> StackDrift:
    """Each resource's drift from a refresh preview's engine events (JSON, the engine's
    shapes); the last step of a resource counts."""
    steps: dict[str, dict[str, Any]] = {}
    for event in events:
        step = (event.get("resOutputsEvent") or {}).get("metadata")
        if step and step.get("urn"):
            steps[step["urn"]] = step
    resources = [r for step in steps.values() if (r := _resource(step)) is not None]
    return StackDrift(stack, sorted(resources, key=lambda r: r.urn))


def exit_code(results: list[StackDrift]) -> int:
    """1 when a stack could not be checked, 2 when any drifted, 0 when none did."""
    if any(result.error for result in results):
        return 1
    return 2 if any(result.drifted for result in results) else 0


def _counts(result: StackDrift) -> str:
    if result.error:
        return f"could not be checked: {result.error}"
    counts = {status: 0 for status in LABELS}
    for resource in result.drifted:
        counts[resource.status] += 1
    parts = [f"{n} {LABELS[status]}" for status, n in counts.items() if n]
    unchanged = len(result.resources) - len(result.drifted)
    return ", ".join([*parts, f"{unchanged} unchanged"]) if parts else "no drift"


def text_report(results: list[StackDrift]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.stack}: {_counts(result)}")
        for resource in result.drifted:
            lines.append(f"  {LABELS[resource.status]}: {resource.type} {resource.name}")
            lines += [f"    {c.path}: {c.old} -> {c.new}" for c in resource.changes]
    return "\n".join(lines)


def markdown_report(result: StackDrift) -> str:
    """The body of the stack's drift issue: the same drift gives the same text, so the issue
    is edited rather than duplicated (the workflow adds the run's link)."""
    lines = [f"## Drift in stack `{result.stack}`", "", _counts(result).capitalize() + "."]
    if result.drifted:
        lines += [
            "",
            "| resource | type | status | property | was | is now |",
            "|---|---|---|---|---|---|",
        ]
        for resource in result.drifted:
            rows = resource.changes or (Change("", "", ""),)
            for change in rows:
                cells = [resource.name, f"`{resource.type}`", LABELS[resource.status]]
                cells += [f"`{change.path}`" if change.path else "", change.old, change.new]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def json_report(results: list[StackDrift]) -> str:
    return json.dumps(
        [asdict(result) | {"exit_code": exit_code([result])} for result in results], indent=2
    )
