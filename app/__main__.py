"""Command line: `python -m app serve|dev|migrate|downgrade|create-api-key|list-api-keys|
revoke-api-key|usage|budget set|budget list|retention|jobs retry|import-chroma`.

With no DATABASE_URL every command uses the embedded Postgres under TANDEM_HOME, the same one
`make dev` serves from, so they work beside a running `make dev`.
"""

import argparse
import asyncio
import math
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.core.config import Settings, get_settings
from app.core.db import connect_args, make_engine, make_sessionmaker, open_database
from app.core.errors import ApiError
from app.core.logging import configure_logging, log_stderr_as_json
from app.core.migrations import migrate
from app.services.api_keys import create_api_key, list_api_keys, revoke_api_key
from app.services.local_runpod import serves_deployments


async def _with_engine(settings: Settings, work: Callable[..., Awaitable[None]]) -> None:
    url, _ = open_database(settings)
    engine = make_engine(url, 1, connect_args(settings))
    try:
        await work(engine)
    finally:
        await engine.dispose()


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_with_engine(settings, lambda engine: migrate(engine, settings, args.revision)))
    print(f"database migrated to {args.revision}")


def _downgrade(settings: Settings, args: argparse.Namespace) -> None:
    async def work(engine) -> None:
        await migrate(engine, settings, args.revision, "downgrade")

    asyncio.run(_with_engine(settings, work))
    print(f"database downgraded to {args.revision}")


def _create_api_key(settings: Settings, args: argparse.Namespace) -> None:
    async def work(engine) -> None:
        await migrate(engine, settings)
        key = await create_api_key(
            make_sessionmaker(engine), args.name, args.tenant, args.budget_usd
        )
        tenant = f"tenant {args.tenant!r}" if args.tenant else "a tenant of its own"
        budget = "" if args.budget_usd is None else f", ${args.budget_usd:,.2f} a month,"
        print(f"API key {args.name!r} created in {tenant}{budget}. It is shown once; store it now:")
        print(key)

    asyncio.run(_with_engine(settings, work))


def _list_api_keys(settings: Settings, args: argparse.Namespace) -> None:
    async def work(engine) -> None:
        await migrate(engine, settings)
        for key in await list_api_keys(make_sessionmaker(engine)):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            created = f"{key.created_at:%Y-%m-%d %H:%M}"
            print(f"{key.id}  {key.name!r}  tenant {key.tenant!r}  created {created}  {state}")

    asyncio.run(_with_engine(settings, work))


def _revoke_api_key(settings: Settings, args: argparse.Namespace) -> None:
    async def work(engine) -> None:
        await migrate(engine, settings)
        if not await revoke_api_key(make_sessionmaker(engine), args.key_id):
            sys.exit(f"no active API key {args.key_id} (see python -m app list-api-keys)")
        print(f"API key {args.key_id} revoked: it is refused from now on")

    asyncio.run(_with_engine(settings, work))


def _usage(settings: Settings, args: argparse.Namespace) -> None:
    from app.services.usage_report import GroupBy, table, usage_report

    async def work(engine) -> None:
        await migrate(engine, settings)
        end = datetime.now(UTC)
        group_by: GroupBy = args.group_by or ("model" if args.tenant else "tenant")
        print(table(await usage_report(engine, args.tenant, end - args.since, end, group_by)))

    asyncio.run(_with_engine(settings, work))


def _budget_set(settings: Settings, args: argparse.Namespace) -> None:
    from app.services.budgets import set_key_budget, set_tenant_budget

    if args.alert_url is not None and args.key is not None:
        sys.exit("--alert-url goes with --tenant: alerts are the tenant's webhook")

    async def work(engine) -> None:
        await migrate(engine, settings)
        if args.key is not None:
            await set_key_budget(engine, args.key, args.monthly_usd)
            whose = f"API key {args.key}"
        else:
            await set_tenant_budget(
                engine, args.tenant, args.monthly_usd, args.alert_percent, args.alert_url
            )
            whose = f"tenant {args.tenant!r}"
        if args.monthly_usd is None:
            print(f"{whose}: no monthly budget")
        else:
            print(f"{whose}: ${args.monthly_usd:,.2f} a month (UTC months)")

    asyncio.run(_with_engine(settings, work))


def _budget_list(settings: Settings, args: argparse.Namespace) -> None:
    from app.services.budgets import budgets

    async def work(engine) -> None:
        await migrate(engine, settings)
        for row in await budgets(engine):
            whose = f"key {row.key_id} ({row.key_name!r})" if row.scope == "key" else "tenant"
            alert = f", alert at {row.alert_percent}% to {row.alert_url}" if row.alert_url else ""
            print(
                f"{row.tenant!r} {whose}: ${row.spent_usd:,.4f} of ${row.monthly_usd:,.2f} "
                f"this month{alert}"
            )

    asyncio.run(_with_engine(settings, work))


def _usd(value: str) -> float:
    """A number of US dollars, 0 or more (argparse's type)."""
    try:
        usd = float(value)
    except ValueError:
        usd = -1.0
    if not math.isfinite(usd) or usd < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not an amount of US dollars (0 or more)")
    return usd


def _since(value: str) -> timedelta:
    """`30d` or `12h` (argparse's type)."""
    unit = {"d": "days", "h": "hours"}.get(value[-1:])
    if unit is None or not value[:-1].isdigit() or int(value[:-1]) == 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a span such as 30d or 12h")
    return timedelta(**{unit: int(value[:-1])})


def _retention(settings: Settings, args: argparse.Namespace) -> None:
    from app.services.retention import Days, apply_retention
    from app.storage import make_storage

    async def work(engine) -> None:
        await migrate(engine, settings)
        storage = make_storage(settings)
        days = Days(
            settings.retention_raw_days,
            settings.retention_audio_days,
            settings.retention_transcript_days,
        )
        for line in await apply_retention(engine, storage, days, args.dry_run):
            print(line)

    asyncio.run(_with_engine(settings, work))


def _retry_jobs(settings: Settings, args: argparse.Namespace) -> None:
    from app.services.job_retry import retry
    from app.storage import make_storage

    if not args.job_ids and not args.failed:
        sys.exit("name the jobs to retry, or --failed for every failed one")

    async def work(engine) -> None:
        await migrate(engine, settings)
        ids = None if args.failed else args.job_ids
        storage = make_storage(settings)
        for line in await retry(engine, storage, ids, settings.job_timeout_seconds):
            print(line)

    asyncio.run(_with_engine(settings, work))


def _import_chroma(settings: Settings, args: argparse.Namespace) -> None:
    try:
        import chromadb  # noqa: F401
        from tqdm import tqdm
    except ImportError:
        sys.exit("import-chroma needs the chroma extra: pip install -e '.[chroma]'")

    from app.services.chroma_import import (
        ImportRefused,
        import_collection,
        keeps_embeddings,
        read_collection,
    )
    from app.storage import make_storage

    try:
        collection = read_collection(args.path, args.collection, args.source_field)
    except ImportRefused as exc:
        sys.exit(str(exc))
    keep = keeps_embeddings(collection, settings, args.embedding_model)
    model = args.embedding_model or collection.model or "an unnamed model"
    sizes = ", ".join(str(dim) for dim in sorted(collection.dims))
    how = "kept" if keep else "embedded again by the embed worker (Chroma's are not ours)"
    print(
        f"{collection.name!r}: {len(collection.documents)} documents, {collection.chunks} chunks; "
        f"embeddings of {model} ({sizes} dimensions) {how}"
    )

    async def work(engine) -> None:
        await migrate(engine, settings)
        backend = _embedding_backend(settings)
        try:
            with tqdm(total=collection.chunks, unit="chunk") as bar:
                summary = await import_collection(
                    engine,
                    make_storage(settings),
                    backend,
                    settings,
                    collection,
                    args.tenant,
                    keep,
                    args.dry_run,
                    bar.update,
                )
        finally:
            await backend.aclose()
        for line in summary.lines(args.dry_run):
            print(line)

    asyncio.run(_with_engine(settings, work))


def _embedding_backend(settings: Settings):
    """The backend that embeds texts: RunPod's, or only the embed worker in this process."""
    from app.inference import make_backend

    if settings.inference_backend == "runpod":
        return make_backend(settings)
    from app.inference.local import LocalBackend
    from app.inference.local_models import local_workers

    embed = local_workers(settings)["embed"]
    return LocalBackend({"embed": embed}, settings.runpod_timeout_seconds)


def _banner(settings: Settings, host: str, port: int) -> str:
    if settings.database_url is not None:
        database = "DATABASE_URL"
    else:
        database = f"embedded Postgres (pgvector) in {settings.tandem_home / 'pgdata'}"
    if settings.inference_backend == "local":
        from app.inference.local_models import (
            TINY_CLIP,
            TINY_DIFFUSION,
            TINY_LLM,
            WHISPER_TINY_EN,
            served,
        )

        embedder = settings.text_embedding_model or "all-MiniLM-L6-v2 (packaged)"
        inference = (
            f"in-process: chat {served(settings.llm_model, TINY_LLM)},\n"
            f"             text embeddings {embedder},\n"
            f"             CLIP {served(settings.clip_model, TINY_CLIP)},\n"
            f"             images {served(settings.imagegen_model, TINY_DIFFUSION)},\n"
            f"             speech "
            f"{served(settings.transcribe_model, WHISPER_TINY_EN, 'packaged, English only')}\n"
            "             (they load in the background; /readiness answers 200 once they have)"
        )
    else:
        inference = f"RunPod at {settings.runpod_api_base}"
    if serves_deployments(settings):
        deployments = "model directories, on a local RunPod whose workers run here"
    else:
        image = settings.deployment_image
        deployments = f"{image} on {settings.runpod_rest_api}" if image else "off (no image)"
    return (
        f"Tandem API on http://{host}:{port}  (docs: http://{host}:{port}/docs)\n"
        f"  database:  {database}\n"
        f"  inference: {inference}\n"
        f"  deployments: {deployments}\n"
        "  API key:   .venv/bin/python -m app create-api-key --name me\n"
        "Ctrl-C stops everything."
    )


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    if args.banner and "public_url" not in settings.model_fields_set:
        # make dev on another port: signed URLs and workers' callbacks come here.
        os.environ["PUBLIC_URL"] = f"http://{args.host}:{args.port}"
        get_settings.cache_clear()
        settings = get_settings()
    if args.banner:
        print(_banner(settings, args.host, args.port), flush=True)
    log_stderr_as_json()
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,  # RequestContextMiddleware logs each request, once, as JSON
        proxy_headers=True,
        # Idle connections outlive the clients' own idle timeouts (Google's load balancers keep
        # theirs 600 s): else a request sent as the server closes one fails in transport.
        timeout_keep_alive=620,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's server
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=_serve, banner=False)

    dev = commands.add_parser("dev", help="serve the API locally and say what is running")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(run=_serve, banner=True)

    up = commands.add_parser("migrate", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(run=_migrate)

    down = commands.add_parser("downgrade", help="revert migrations down to a revision")
    down.add_argument("revision", help="target revision, e.g. base")
    down.set_defaults(run=_downgrade)

    key = commands.add_parser("create-api-key", help="create an API key and print it once")
    key.add_argument("--name", required=True)
    key.add_argument(
        "--tenant", help="the tenant whose data the key reads and writes (default: its own)"
    )
    key.add_argument(
        "--budget-usd", type=_usd, help="what the key may spend a month (default: no limit)"
    )
    key.set_defaults(run=_create_api_key)
    keys = commands.add_parser("list-api-keys", help="list the API keys (never the keys)")
    keys.set_defaults(run=_list_api_keys)
    revoke = commands.add_parser("revoke-api-key", help="refuse an API key from now on")
    revoke.add_argument("key_id", type=uuid.UUID, help="its id, from list-api-keys")
    revoke.set_defaults(run=_revoke_api_key)

    usage = commands.add_parser(
        "usage", help="what each tenant's requests had the workers do, and what it cost"
    )
    usage.add_argument("--tenant", help="only this tenant's (by model)")
    usage.add_argument("--since", type=_since, default=timedelta(days=30), help="e.g. 30d, 12h")
    usage.add_argument("--group-by", choices=("tenant", "model", "day", "key", "route"))
    usage.set_defaults(run=_usage)

    budget = commands.add_parser("budget", help="monthly budgets of tenants and keys")
    budget_commands = budget.add_subparsers(dest="budget_command", required=True)
    budget_set = budget_commands.add_parser(
        "set", help="set (or with --none, remove) a tenant's or a key's monthly budget"
    )
    whose = budget_set.add_mutually_exclusive_group(required=True)
    whose.add_argument("--tenant")
    whose.add_argument("--key", type=uuid.UUID, help="an API key's id, from list-api-keys")
    amount = budget_set.add_mutually_exclusive_group(required=True)
    amount.add_argument("--monthly-usd", type=_usd)
    amount.add_argument("--none", dest="monthly_usd", action="store_const", const=None)
    budget_set.add_argument(
        "--alert-percent",
        type=int,
        choices=range(1, 101),
        default=80,
        metavar="1-100",
        help="a tenant's alert goes at this share of its budget (default 80)",
    )
    budget_set.add_argument(
        "--alert-url", help="where a tenant's alert is POSTed, signed with its webhook secret"
    )
    budget_set.set_defaults(run=_budget_set)
    budget_commands.add_parser("list", help="every budget and its spend this month").set_defaults(
        run=_budget_list
    )

    retention = commands.add_parser(
        "retention",
        help="delete uploads older than RETENTION_RAW_DAYS, with their rows, transcripts "
        "older than RETENTION_TRANSCRIPT_DAYS (their raw audio after RETENTION_AUDIO_DAYS), "
        "and the deployments of tenants with no active API key",
    )
    retention.add_argument("--dry-run", action="store_true", help="only list what would go")
    retention.set_defaults(run=_retention)

    jobs = commands.add_parser("jobs", help="asynchronous jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    retry = job_commands.add_parser(
        "retry",
        help="queue failed jobs again (the running API submits them): the dead letters replayed",
    )
    retry.add_argument("job_ids", nargs="*", type=uuid.UUID, metavar="ID", help="a failed job")
    retry.add_argument("--failed", action="store_true", help="every failed job")
    retry.set_defaults(run=_retry_jobs)

    chroma = commands.add_parser(
        "import-chroma",
        help="import a Chroma directory's collection as a tenant's documents (idempotent)",
    )
    chroma.add_argument("path", type=Path, help="the directory a chromadb.PersistentClient used")
    chroma.add_argument("--tenant", required=True, help="whose documents they become")
    chroma.add_argument("--collection", help="its name (default: the directory's only one)")
    chroma.add_argument(
        "--source-field",
        default="source",
        help="the metadata field naming each chunk's document (default: source)",
    )
    chroma.add_argument(
        "--embedding-model",
        help="the model that made Chroma's embeddings, when its collection does not say",
    )
    chroma.add_argument("--dry-run", action="store_true", help="only say what would change")
    chroma.set_defaults(run=_import_chroma)

    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        sys.exit(f"invalid settings: {exc}")
    configure_logging(settings.log_level)
    try:
        args.run(settings, args)
    except (ApiError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
