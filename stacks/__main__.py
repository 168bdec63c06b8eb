"""`python -m stacks review up|destroy|gc`, `drift`, `check`, `logs` and `cost`: operations on the
Pulumi stacks of this project, for CI and operators (see README, "CI/CD")."""

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from infra.config import REPO_ROOT, ConfigError, stack_settings
from runpod_api.client import REST_API, RunPodApiError, RunPodRest
from stacks import cost, logs
from stacks.drift import StackDrift, classify, exit_code, json_report, markdown_report, text_report
from stacks.postdeploy import CheckFailed, check
from stacks.review import (
    SHARED_SECRETS,
    UsageError,
    checked_review_stack,
    duration,
    pr_comment,
    pr_number,
    review_config,
    review_stack,
    stale,
)
from stacks.workspace import AutomationWorkspace, OperationFailed, Workspace, check_credentials


def _settings(stack: str, work_dir: Path) -> dict:
    try:
        return stack_settings(stack, work_dir)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _review_up(args: argparse.Namespace, workspace: Workspace) -> int:
    pr = pr_number(args.pr)
    stack = review_stack(pr)
    extra = review_config(duration(args.ttl), args.own_gpu_endpoints)
    settings = _settings(stack, args.work_dir) | extra
    message = f"review stack for PR #{pr}" + (f" at {args.sha}" if args.sha else "")
    result = workspace.up(stack, settings, list(SHARED_SECRETS), message)
    comment = pr_comment(pr, args.sha, result.outputs, result.summary)
    print(f"api_url: {result.outputs.get('api_url', '(not exported)')}")
    print(comment)
    if args.comment_file:
        args.comment_file.write_text(comment)
    return 0


def _review_destroy(args: argparse.Namespace, workspace: Workspace) -> int:
    stack = review_stack(pr_number(args.pr)) if args.pr else checked_review_stack(args.stack)
    gone = not workspace.destroy(stack)
    print(f"{stack}: " + ("already gone" if gone else "destroyed and removed"))
    return 0


def _review_gc(args: argparse.Namespace, workspace: Workspace) -> int:
    max_age = duration(args.max_age)
    open_prs = None
    if args.open_prs is not None:
        open_prs = {pr_number(n) for n in args.open_prs.split(",") if n.strip()}
    targets = stale(workspace.stacks(), datetime.now(UTC), max_age, open_prs)
    failed = 0
    for stack, reason in targets:
        try:
            workspace.destroy(stack)
        except Exception as exc:
            failed += 1
            print(f"{stack}: NOT destroyed ({reason}): {type(exc).__name__}: {exc}")
        else:
            print(f"{stack}: destroyed ({reason})")
    print(f"{len(targets) - failed} review stack(s) destroyed, {failed} failed")
    return 1 if failed else 0


def _drift(args: argparse.Namespace, workspace: Workspace) -> int:
    stacks = args.stack or ["dev", "prod"]
    for stack in stacks:
        _settings(stack, args.work_dir)  # a known stack, or one line saying it is not
    results = []
    for stack in stacks:
        try:
            results.append(classify(stack, workspace.preview_refresh(stack)))
        except Exception as exc:
            results.append(StackDrift(stack, error=f"{type(exc).__name__}: {exc}"[:500]))
    if args.format == "json":
        print(json_report(results))
    elif args.format == "markdown":
        print("\n".join(markdown_report(result) for result in results))
    else:
        print(text_report(results))
    return exit_code(results)


def _check(args: argparse.Namespace, workspace: Workspace) -> int:
    env = {name: os.environ.get(name, "") for name in ("TANDEM_API_KEY", "RUNPOD_API_KEY")}
    missing = [name for name, value in env.items() if not value]
    if missing:
        raise UsageError(f"the post-deploy check needs {', '.join(missing)}")
    try:
        check(
            args.api_url,
            env["TANDEM_API_KEY"],
            args.endpoint_id or [],
            os.environ.get("RUNPOD_API_BASE", "https://api.runpod.ai/v2"),
            os.environ.get("RUNPOD_REST_API", REST_API),
            env["RUNPOD_API_KEY"],
            duration(args.timeout).total_seconds(),
        )
    except CheckFailed as exc:
        print(f"post-deploy check failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _logs(args: argparse.Namespace, workspace: Workspace) -> int:
    key = os.environ.get("RUNPOD_API_KEY", "")
    if not key:
        raise UsageError("worker logs need RUNPOD_API_KEY")
    endpoint = logs.endpoint_id(workspace.outputs(args.stack), args.endpoint)
    with RunPodRest(key, os.environ.get("RUNPOD_REST_API", REST_API)) as rest:
        try:
            for line in logs.lines(rest, endpoint, args.worker, args.follow):
                print(line, flush=True)
        except RunPodApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
    return 0


def _cost(args: argparse.Namespace, workspace: Workspace) -> int:
    from infra.plan import make_plan

    key = os.environ.get("RUNPOD_API_KEY", "")
    if not key:
        raise UsageError("RunPod's billing needs RUNPOD_API_KEY (its read-only key will do)")
    settings = _settings(args.stack, args.work_dir)
    estimate = make_plan(args.stack, settings).cost
    outputs = workspace.outputs(args.stack)
    with RunPodRest(key, os.environ.get("RUNPOD_REST_API", REST_API)) as rest:
        try:
            found = cost.spends(args.stack, outputs, rest, estimate, args.days)
            failing = cost.unhealthy_lines(args.stack, outputs, rest)
        except RunPodApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.format == "markdown":
        for line in [*cost.overspend_lines(args.stack, found, args.days), *failing]:
            print(line)
    else:
        print("\n".join([cost.text_report(args.stack, found, args.days), *failing]))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m stacks", description=__doc__)
    root.add_argument(
        "--work-dir",
        type=Path,
        default=REPO_ROOT,
        help="the Pulumi project's directory (default: this repository's root)",
    )
    commands = root.add_subparsers(dest="command", required=True)
    review = commands.add_parser("review", help="review stacks, one per pull request")
    actions = review.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="create or update pr-<N> and print its PR comment")
    up.add_argument("--pr", required=True)
    up.add_argument("--sha")
    up.add_argument("--ttl", default="72h", help="time to live, e.g. 72h (a label)")
    up.add_argument(
        "--own-gpu-endpoints",
        action="store_true",
        help="GPU endpoints of its own, on images of the PR (default: dev's endpoints)",
    )
    up.add_argument("--comment-file", type=Path, help="also write the PR comment's Markdown here")
    up.set_defaults(run=_review_up)
    destroy = actions.add_parser("destroy", help="destroy and remove pr-<N>")
    which = destroy.add_mutually_exclusive_group(required=True)
    which.add_argument("--pr")
    which.add_argument("--stack", help="a review stack's name, pr-<N>")
    destroy.set_defaults(run=_review_destroy)
    gc = actions.add_parser("gc", help="destroy review stacks past their age or PR")
    gc.add_argument("--max-age", default="72h")
    gc.add_argument("--open-prs", help="comma-separated open PR numbers; others are destroyed")
    gc.set_defaults(run=_review_gc)
    drift = commands.add_parser("drift", help="refresh previews: what changed out of band")
    drift.add_argument("--stack", action="append", help="a stack (repeat); default dev and prod")
    drift.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    drift.set_defaults(run=_drift)
    after = commands.add_parser(
        "check", help="after a deploy: readiness, GPU health and rollout, a smoke chat"
    )
    after.add_argument("--api-url", required=True)
    after.add_argument("--endpoint-id", action="append", help="a RunPod endpoint id (repeat)")
    after.add_argument("--timeout", default="15m")
    after.set_defaults(run=_check, needs_pulumi=False)
    logged = commands.add_parser("logs", help="a GPU endpoint's worker logs, from RunPod")
    logged.add_argument("stack")
    logged.add_argument("endpoint", help="a worker type the stack runs (llm, clip...) or an id")
    logged.add_argument("--worker", help="one worker's id (default: every worker's)")
    logged.add_argument("--follow", action="store_true", help="keep printing new lines")
    logged.set_defaults(run=_logs)
    spent = commands.add_parser(
        "cost",
        help="what RunPod billed the stack's endpoints beside the plan's estimate, and workers "
        "failing to start",
    )
    spent.add_argument("stack")
    spent.add_argument("--days", type=int, default=30, choices=range(1, 367), metavar="1-366")
    spent.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="markdown: only the lines of endpoints billed over 25 %% above their estimate or "
        "with workers failing to start",
    )
    spent.set_defaults(run=_cost)
    return root


def main(
    argv: list[str] | None = None, workspace: Callable[[Path], Workspace] = AutomationWorkspace
) -> int:
    args = parser().parse_args(argv)
    try:
        if getattr(args, "needs_pulumi", True):
            check_credentials()
            if not (args.work_dir / "Pulumi.yaml").is_file():
                raise UsageError(f"{args.work_dir} is not a Pulumi project (no Pulumi.yaml)")
            return args.run(args, workspace(args.work_dir))
        return args.run(args, None)
    except (UsageError, OperationFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
