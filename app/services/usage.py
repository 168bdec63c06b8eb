"""Usage, metered: a row for each piece of work a request has a worker do (its counts, how long
it waited for and ran on the worker, what that cost at its GPU's price a second) and each
key's spend this month, which budgets are checked against (app/services/api_keys.py).

A request's rows are queued for the `UsageWriter`, which inserts whatever has queued in one
statement off the request path; a chat turn that is stored writes its rows in its own statement
instead (`Meter.hold`/`take`, `USAGE_CTES`). A killed API loses the queued rows of the requests
it had just answered (at most GATHER_S and one write's worth).
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import REPO_ROOT, Settings
from app.core.db import autocommit
from app.core.errors import DatabaseUnavailable
from runpod_api import catalog

log = logging.getLogger("tandem.usage")

GATHER_S = 0.05  # how long the writer waits for more rows before a write
MAX_QUEUED = 100_000  # rows kept while the database is unavailable
MONTH = "date_trunc('month', now() AT TIME ZONE 'UTC')::date"
_COLUMNS = {
    "tenant": "varchar",
    "api_key_id": "uuid",
    "route": "varchar",
    "worker": "varchar",
    "model": "varchar",
    "deployment_id": "uuid",
    "endpoint": "varchar",
    "input_tokens": "int",
    "output_tokens": "int",
    "items": "int",
    "audio_seconds": "float8",
    "pixel_steps": "bigint",
    "delay_ms": "float8",
    "execution_ms": "float8",
    "cost_usd": "float8",
    "billed_to": "varchar",
    "request_id": "varchar",
}
# The usage rows in `:usage` (a JSON list) inserted, and their cost on the stack's account added
# to each key's spend this month, in key order (so two writers never wait on each other's rows).
USAGE_CTES = f"""
used AS (
    INSERT INTO usage ({", ".join(_COLUMNS)})
    SELECT * FROM jsonb_to_recordset(CAST(:usage_rows AS jsonb))
        AS u({", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())})
    RETURNING tenant, api_key_id, cost_usd, billed_to
),
spent AS (
    INSERT INTO spend AS s (api_key_id, month, tenant, usd)
    SELECT api_key_id, {MONTH}, tenant, sum(cost_usd) FROM used
    WHERE billed_to = 'stack' AND cost_usd IS NOT NULL AND api_key_id IS NOT NULL
    GROUP BY api_key_id, tenant ORDER BY api_key_id
    ON CONFLICT (api_key_id, month) DO UPDATE SET usd = s.usd + excluded.usd
)
"""  # noqa: S608 - the names are this module's
_WRITE = text(f"WITH {USAGE_CTES} SELECT count(*) FROM used")  # noqa: S608


@dataclass(frozen=True)
class Charge:
    """How work on an endpoint is paid for: its GPU's price (None: unknown), and by whom
    ("tenant": a deployment in the tenant's own RunPod account)."""

    usd_per_second: float | None
    billed_to: str = "stack"
    deployment_id: uuid.UUID | None = None


def counts(result: dict[str, Any]) -> dict[str, Any]:
    """What a worker's result (or an OpenAI answer) says it took: tokens in and out, texts or
    images embedded or drawn, seconds of audio, images x pixels x steps."""
    usage = result.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    found = {
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "audio_seconds": usage.get("seconds"),
    }
    listed = result.get("embeddings") or result.get("data") or result.get("images")
    if isinstance(listed, list):
        found["items"] = len(listed)
    elif "embedding" in result:
        found["items"] = 1
    sizes = [
        size for key in ("width", "height", "steps") if isinstance(size := result.get(key), int)
    ]
    if isinstance(result.get("images"), list) and len(sizes) == 3:
        width, height, steps = sizes
        found["pixel_steps"] = len(result["images"]) * width * height * steps
    return found


class UsageWriter:
    """Inserts queued usage rows off the request path: one statement for whatever queued while
    the last one ran. `on_written(tenants)` runs after each write (budget alerts)."""

    def __init__(
        self,
        engine: AsyncEngine,
        on_written: Callable[[set[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.engine, self.on_written = engine, on_written
        self._rows: list[dict[str, Any]] = []
        self._written: set[str] = set()  # tenants whose usage others wrote (stored turns)
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def put(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)
        self._queued.set()

    def written(self, tenant: str) -> None:
        """Usage of `tenant`'s was written elsewhere: `on_written` is told at the next write."""
        self._written.add(tenant)
        self._queued.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued (a write under way finishes), then stop."""
        self._stopping = True
        self._queued.set()
        if self._task is not None:
            await self._task
        try:
            await self.flush()
        except Exception:
            log.exception("%d usage rows were not written", len(self._rows))

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        tenants, self._written = self._written, set()
        self._queued.clear()
        if rows:
            try:
                await write(self.engine, rows)
            except DatabaseUnavailable:  # kept for the next write (the newest MAX_QUEUED)
                self._rows[:0] = rows
                if (dropped := len(self._rows) - MAX_QUEUED) > 0:
                    del self._rows[:dropped]
                    log.error("%d usage rows dropped: the database is unavailable", dropped)
                self._queued.set()
                raise
        tenants |= {row["tenant"] for row in rows}
        if tenants and self.on_written is not None:
            await self.on_written(tenants)

    async def _run(self) -> None:
        while not self._stopping:
            await self._queued.wait()
            if not self._stopping:  # rows of requests finishing meanwhile join this write
                await asyncio.sleep(GATHER_S)
            try:
                await self.flush()
            except Exception:
                log.exception("usage rows not written yet; trying again in a second")
                await asyncio.sleep(1)


async def write(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with autocommit(engine) as conn:
        await write_in(conn, rows)


async def write_in(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Write usage rows in `conn`'s transaction."""
    await conn.execute(_WRITE, {"usage_rows": json.dumps(rows)})


class Meter:
    """One request's usage: a row for each answer a worker gives it, queued for the writer, or
    held (`hold`) for the stored turn that writes them in its own transaction (`take`)."""

    def __init__(
        self,
        writer: UsageWriter,
        prices: dict[str, float | None],
        tenant: str,
        key_id: uuid.UUID | None,
        route: str,
        request_id: str,
    ) -> None:
        self.writer, self.prices = writer, prices
        self.tenant, self.key_id, self.route, self.request_id = tenant, key_id, route, request_id
        self.held: list[dict[str, Any]] | None = None

    def stack_charge(self, worker: str) -> Charge:
        return Charge(self.prices.get(worker))

    def add(
        self,
        worker: str,
        endpoint: str,
        charge: Charge,
        result: dict[str, Any],
        started: float,
        timed: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """A row for `result`, begun at `started` (perf_counter); `timed`: RunPod's delayTime
        and executionTime of the job, in ms (else the time measured here is the execution's)."""
        delay_ms, execution_ms = timed
        if execution_ms is None:
            execution_ms = (time.perf_counter() - started) * 1000
        row = usage_row(
            self.tenant,
            self.key_id,
            self.route,
            self.request_id,
            worker,
            endpoint,
            charge,
            result,
            delay_ms,
            execution_ms,
        )
        if self.held is not None:
            self.held.append(row)
        else:
            self.writer.put([row])

    def hold(self) -> None:
        """Keep the rows from now on for `take`."""
        self.held = []

    def take(self) -> list[dict[str, Any]]:
        """The rows held (for a statement of the caller's); later ones go to the writer."""
        rows, self.held = self.held or [], None
        return rows

    def written(self) -> None:
        """The rows `take` gave were written (with a stored turn)."""
        self.writer.written(self.tenant)

    def give_back(self, rows: list[dict[str, Any]]) -> None:
        """Rows `take` gave that their statement did not write: the writer writes them."""
        if rows:
            self.writer.put(rows)


def usage_row(
    tenant: str,
    key_id: uuid.UUID | None,
    route: str,
    request_id: str,
    worker: str,
    endpoint: str,
    charge: Charge,
    result: dict[str, Any],
    delay_ms: float | None,
    execution_ms: float | None,
) -> dict[str, Any]:
    """A usage row (`execution_ms` None: the worker's own total, else 0)."""
    if execution_ms is None:
        timings = result.get("timings")
        execution_ms = float(timings.get("total_ms", 0)) if isinstance(timings, dict) else 0.0
    execution_ms, price = round(execution_ms, 3), charge.usd_per_second
    return {
        "tenant": tenant,
        "api_key_id": key_id and str(key_id),
        "route": route,
        "worker": worker,
        "model": _model(result),
        "deployment_id": charge.deployment_id and str(charge.deployment_id),
        "endpoint": endpoint,
        **counts(result),
        "delay_ms": delay_ms,
        "execution_ms": execution_ms,
        "cost_usd": None if price is None else price * execution_ms / 1000,
        "billed_to": charge.billed_to,
        "request_id": request_id[:128],
    }


def _model(result: dict[str, Any]) -> str | None:
    model = result.get("model")
    return model[:300] if isinstance(model, str) else None


def stack_prices(settings: Settings) -> dict[str, float | None]:
    """USD a second on each worker type's GPUs: GPU_PRICES (the stack sets it from the RunPod
    catalog); unset in a local or test run, the dev stack's (Pulumi.dev.yaml) at the catalog
    snapshot's prices, so budgets can be tried on `make dev`."""
    if settings.gpu_prices is not None:
        return dict(settings.gpu_prices)
    stack = REPO_ROOT / "Pulumi.dev.yaml"
    if not settings.on_one_machine or not stack.exists():
        return {}
    gpus = yaml.safe_load(stack.read_text())["config"].get("tandem:gpu", {})
    found: dict[str, float | None] = {}
    for worker, config in gpus.items():
        try:
            found[worker] = catalog.selection_price(config["gpuTypes"], catalog.snapshot()["gpus"])
        except (catalog.UnknownGpu, KeyError, TypeError):
            found[worker] = None
    return found


def month_start(now: datetime | None = None) -> datetime:
    """The start of the (UTC) month `now` is in."""
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month() -> date:
    """The first day of next (UTC) month, when monthly budgets renew."""
    start = month_start()
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)
