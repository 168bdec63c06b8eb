"""The one seam to the Pulumi CLI: the few stack operations `stacks` needs, through the
Automation API. The project's program (Pulumi.yaml's `main`) runs in this process as an inline
program, so no language host is needed beside the CLI. Everything else in `stacks` is pure;
its unit tests replace this class with a double, and the engine tests run it for real."""

import contextlib
import os
import re
import runpy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from stacks.drift import SECRET
from stacks.review import StackInfo, UsageError


@dataclass(frozen=True)
class UpResult:
    outputs: dict[str, Any]  # secret outputs shown as [secret]
    summary: dict[str, int]  # resource changes by operation


class Workspace(Protocol):
    def stacks(self) -> list[StackInfo]: ...

    def up(
        self, stack: str, settings: dict[str, Any], shared_secrets: list[str], message: str
    ) -> UpResult:
        """Create or select `stack`, make `settings` (`namespace:key` -> value) its config,
        copy `shared_secrets` from dev where the stack has none of its own, and run `up`."""

    def destroy(self, stack: str) -> bool:
        """Destroy the stack's resources and remove it; False when there is no such stack."""

    def preview_refresh(self, stack: str) -> list[dict[str, Any]]:
        """A refresh preview's engine events, in the engine's JSON shapes; changes no state."""

    def outputs(self, stack: str) -> dict[str, Any]:
        """The stack's outputs (secret ones as [secret])."""


def check_credentials(environ: dict[str, str] | None = None) -> None:
    """Refuse to start without a Pulumi backend login, or a passphrase for a self-managed
    backend's secrets."""
    env = os.environ if environ is None else environ
    backend = env.get("PULUMI_BACKEND_URL", "")
    if not env.get("PULUMI_ACCESS_TOKEN") and not backend:
        raise UsageError(
            "no Pulumi backend: set PULUMI_ACCESS_TOKEN (Pulumi Cloud) or PULUMI_BACKEND_URL "
            "(a self-managed backend such as gs://bucket)"
        )
    self_managed = backend and not backend.startswith("https://")
    if self_managed and not (
        env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        raise UsageError(
            f"the backend {backend} keeps secrets with a passphrase: set "
            "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"
        )


class OperationFailed(Exception):
    """A Pulumi operation failed; the message is its cause (a provider's exception or the
    engine's error line), not the whole CLI transcript."""


_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception): .+")
_GENERIC = {"error: update failed", "error: preview failed", "error: destroy failed"}


@contextlib.contextmanager
def _concise(auto: Any) -> Iterator[None]:
    try:
        yield
    except auto.CommandError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        causes = [line for line in lines if _EXCEPTION.match(line)]
        errors = [line for line in lines if line.startswith("error: ") and line not in _GENERIC]
        raise OperationFailed((causes or errors or lines or ["(no output)"])[-1]) from None


def _secure(value: Any) -> bool:
    return isinstance(value, dict) and "secure" in value


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    """Make `settings` (`namespace:key` -> value) the config of the stack settings file at
    `path`, keeping its encryption salt and the secrets it holds (secrets in `settings` are
    another stack's, encrypted with its key: left out)."""
    current = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    plain = {key: value for key, value in settings.items() if not _secure(value)}
    kept = {key: v for key, v in (current.get("config") or {}).items() if _secure(v)}
    path.write_text(yaml.safe_dump({**current, "config": {**plain, **kept}}))


def _utc(value: datetime | str | None) -> datetime | None:
    """A stack's last update as an aware UTC datetime (the SDK gives a naive UTC datetime)."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AutomationWorkspace:
    """The Pulumi project in `work_dir`, through `pulumi.automation`."""

    def __init__(self, work_dir: Path) -> None:
        from pulumi import automation

        self.auto = automation
        self.work_dir = work_dir.resolve()
        project = yaml.safe_load((self.work_dir / "Pulumi.yaml").read_text())
        self.main = self.work_dir / project.get("main", ".")
        self.workspace = automation.LocalWorkspace(
            work_dir=str(self.work_dir), program=self._program
        )

    def _program(self) -> None:
        runpy.run_path(str(self.main), run_name="__main__")

    def stack(self, name: str, create: bool = False):
        make = self.auto.Stack.create_or_select if create else self.auto.Stack.select
        return make(name, self.workspace)

    def stacks(self) -> list[StackInfo]:
        return [StackInfo(s.name, _utc(s.last_update)) for s in self.workspace.list_stacks()]

    def _write_settings(self, stack: str, settings: dict[str, Any]) -> None:
        """Make `settings` the stack's config, keeping its encryption salt and the secrets it
        holds (secrets in `settings` are another stack's, encrypted with its key: left out)."""
        path = self.work_dir / f"Pulumi.{stack}.yaml"
        current = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
        plain = {key: value for key, value in settings.items() if not _secure(value)}
        kept = {key: v for key, v in (current.get("config") or {}).items() if _secure(v)}
        path.write_text(yaml.safe_dump({**current, "config": {**plain, **kept}}))

    def up(
        self, stack: str, settings: dict[str, Any], shared_secrets: list[str], message: str
    ) -> UpResult:
        target = self.stack(stack, create=True)
        write_settings(self.work_dir / f"Pulumi.{stack}.yaml", settings)
        own = target.get_all_config()
        dev = self.stack("dev")
        dev_config = dev.get_all_config()
        for key in shared_secrets:
            name = f"tandem:{key}"
            if name not in own and name in dev_config:
                value = dev.get_config(name).value
                target.set_config(name, self.auto.ConfigValue(value, secret=True))
        with _concise(self.auto):
            result = target.up(message=message, on_output=print)
        outputs = {k: SECRET if v.secret else v.value for k, v in result.outputs.items()}
        return UpResult(outputs, dict(result.summary.resource_changes or {}))

    def destroy(self, stack: str) -> bool:
        try:
            target = self.stack(stack)
        except self.auto.StackNotFoundError:
            return False
        with _concise(self.auto):
            target.destroy(on_output=print)
        self.workspace.remove_stack(stack)
        return True

    def preview_refresh(self, stack: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def collect(event: Any) -> None:
            if (found := _event_json(event)) is not None:
                events.append(found)

        with _concise(self.auto):
            self.stack(stack).preview_refresh(on_event=collect, show_secrets=False)
        return events

    def outputs(self, stack: str) -> dict[str, Any]:
        found = self.stack(stack).outputs()
        return {key: SECRET if value.secret else value.value for key, value in found.items()}


def _event_json(event: Any) -> dict[str, Any] | None:
    """A resource step of an Automation API EngineEvent as the engine's JSON event
    (`{"resourcePreEvent"|"resOutputsEvent": {"metadata": step}}`); None for other events."""
    for attribute, key in (
        ("resource_pre_event", "resourcePreEvent"),
        ("res_outputs_event", "resOutputsEvent"),
    ):
        if (found := getattr(event, attribute)) is not None:
            return {key: {"metadata": _step(found.metadata)}}
    return None


def _step(metadata: Any) -> dict[str, Any]:
    """An Automation API step (`StepEventMetadata`) as the engine's JSON step."""

    def state(s: Any) -> dict[str, Any] | None:
        if s is None:
            return None
        return {"type": s.type, "urn": s.urn, "id": s.id, "outputs": s.outputs or {}}

    return {
        "op": getattr(metadata.op, "value", metadata.op),
        "urn": metadata.urn,
        "type": metadata.type,
        "provider": metadata.provider,
        "old": state(metadata.old),
        "new": state(metadata.new),
        "diffs": metadata.diffs or [],
        "detailedDiff": {
            path: {"diffKind": diff.diff_kind.value, "inputDiff": diff.input_diff}
            for path, diff in (metadata.detailed_diff or {}).items()
        },
    }
