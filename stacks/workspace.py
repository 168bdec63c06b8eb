"""The one seam to the Pulumi CLI: the few stack operations `stacks` needs, through the
Automation API (which runs the `pulumi` CLI). Everything else in `stacks` is pure and tested;
tests replace this class with a double that records the calls."""

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from infra.config import REPO_ROOT
from stacks.drift import SECRET
from stacks.review import StackInfo, UsageError


@dataclass(frozen=True)
class UpResult:
    outputs: dict[str, Any]  # secret outputs shown as [secret]
    summary: dict[str, int]  # resource changes by operation


class Workspace(Protocol):
    def stacks(self) -> list[StackInfo]: ...

    def up(
        self, stack: str, config: dict[str, Any], shared_secrets: list[str], message: str
    ) -> UpResult:
        """Create or select `stack`, set `config`, copy `shared_secrets` from dev where the
        stack has none of its own, and run `up`."""

    def destroy(self, stack: str) -> bool:
        """Destroy the stack's resources and remove it; False when there is no such stack."""

    def preview_refresh(self, stack: str) -> list[dict[str, Any]]:
        """A refresh preview's engine events, as JSON dicts; changes no state."""


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


def _step(metadata: Any) -> dict[str, Any]:
    """An Automation API step (`StepEventMetadata`) as the CLI's JSON engine event step."""

    def state(s: Any) -> dict[str, Any] | None:
        return None if s is None else {"type": s.type, "urn": s.urn, "outputs": s.outputs or {}}

    return {
        "op": getattr(metadata.op, "value", metadata.op),
        "urn": metadata.urn,
        "type": metadata.type,
        "old": state(metadata.old),
        "new": state(metadata.new),
        "diffs": metadata.diffs or [],
        "detailedDiff": {
            path: {"diffKind": diff.diff_kind.value, "inputDiff": diff.input_diff}
            for path, diff in (metadata.detailed_diff or {}).items()
        },
    }


class AutomationWorkspace:
    """The Pulumi project at the repository root, through `pulumi.automation`."""

    def __init__(self, work_dir: str = str(REPO_ROOT)) -> None:
        from pulumi import automation

        self.auto = automation
        self.work_dir = work_dir

    def _stack(self, name: str, create: bool = False):
        make = self.auto.create_or_select_stack if create else self.auto.select_stack
        return make(stack_name=name, work_dir=self.work_dir)

    def stacks(self) -> list[StackInfo]:
        workspace = self.auto.LocalWorkspace(work_dir=self.work_dir)
        return [
            StackInfo(s.name, datetime.fromisoformat(s.last_update) if s.last_update else None)
            for s in workspace.list_stacks()
        ]

    def up(
        self, stack: str, config: dict[str, Any], shared_secrets: list[str], message: str
    ) -> UpResult:
        target = self._stack(stack, create=True)
        for key, value in config.items():
            target.set_config(key, self.auto.ConfigValue(str(value)))
        own = target.get_all_config()
        dev = self._stack("dev")
        for key in shared_secrets:
            name = f"tandem:{key}"
            if name not in own and name in dev.get_all_config():
                value = dev.get_config(name).value
                target.set_config(name, self.auto.ConfigValue(value, secret=True))
        result = target.up(message=message, on_output=print)
        outputs = {k: SECRET if v.secret else v.value for k, v in result.outputs.items()}
        return UpResult(outputs, dict(result.summary.resource_changes or {}))

    def destroy(self, stack: str) -> bool:
        try:
            target = self._stack(stack)
        except self.auto.StackNotFoundError:
            return False
        target.destroy(on_output=print)
        target.workspace.remove_stack(stack)
        return True

    def preview_refresh(self, stack: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def collect(event: Any) -> None:
            if event.resource_pre_event is not None:
                metadata = _step(event.resource_pre_event.metadata)
                events.append({"resourcePreEvent": {"metadata": metadata}})

        self._stack(stack).preview_refresh(on_event=collect, show_secrets=False)
        return events
