"""Review stacks: one per pull request (`pr-<N>`), made from dev's settings with the review
overrides (infra.config.REVIEW_OVERRIDES), living until their PR closes or their TTL passes."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from infra.config import REVIEW_STACK, SECRET_KEYS

_DURATION = re.compile(r"(0|[1-9][0-9]*)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class UsageError(ValueError):
    """Bad input on the command line: one line, exit 1, nothing done."""


def pr_number(value: str | int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"a PR number must be a positive integer, got {value!r}")
    return int(text)


def review_stack(pr: int) -> str:
    return f"pr-{pr}"


def pr_of(stack: str) -> int | None:
    """The PR of a review stack's name, None for any other stack."""
    return int(stack[3:]) if REVIEW_STACK.fullmatch(stack) else None


def checked_review_stack(stack: str) -> str:
    if pr_of(stack) is None:
        raise UsageError(f"refusing {stack!r}: only review stacks named pr-<N> are destroyed here")
    return stack


def duration(value: str) -> timedelta:
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise UsageError(f"malformed duration {value!r}: use a number and s, m, h or d, e.g. 72h")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def review_config(ttl: timedelta, own_gpu_endpoints: bool = False) -> dict[str, Any]:
    """What `review up` adds to the review stack's settings (infra.config.stack_settings): its
    time to live (a label) and whether it has GPU endpoints of its own (a PR that changes the
    workers) or uses dev's."""
    hours = max(1, round(ttl.total_seconds() / 3600))
    return {"tandem:ttlHours": hours, "tandem:ownGpuEndpoints": own_gpu_endpoints}


# Stack secrets a review stack takes from dev unless it sets its own (nothing to copy per PR).
SHARED_SECRETS = SECRET_KEYS


@dataclass(frozen=True)
class StackInfo:
    name: str
    last_update: datetime | None


def stale(
    stacks: list[StackInfo], now: datetime, max_age: timedelta, open_prs: set[int] | None
) -> list[tuple[str, str]]:
    """Review stacks to destroy, each with why: past `max_age` since their last update, or
    (with `open_prs` given) their PR no longer open."""
    found = []
    for info in sorted(stacks, key=lambda s: s.name):
        pr = pr_of(info.name)
        if pr is None:
            continue
        if open_prs is not None and pr not in open_prs:
            found.append((info.name, f"PR #{pr} is closed"))
        elif info.last_update is not None and now - info.last_update > max_age:
            age = now - info.last_update
            found.append((info.name, f"last updated {age.days}d {age.seconds // 3600}h ago"))
    return found


def pr_comment(pr: int, sha: str | None, outputs: dict[str, Any], summary: dict[str, int]) -> str:
    """The Markdown of the PR comment `review up` prints: where the review stack is."""
    changes = ", ".join(f"{n} {op}" for op, n in sorted(summary.items()) if n) or "no changes"
    lines = [
        f"### Review stack `{review_stack(pr)}`" + (f" at {sha[:12]}" if sha else ""),
        "",
        f"API: {outputs.get('api_url', '(not exported)')}",
        f"Changes: {changes}",
        "",
        "| output | value |",
        "|---|---|",
    ]
    for name, value in sorted(outputs.items()):
        lines.append(f"| `{name}` | {value} |")
    return "\n".join(lines) + "\n"
