"""Local mode's embedded Postgres: a killed run's server is stopped by its watcher (kept while
another process uses it); left behind (the watcher killed too), it is adopted and stopped by
the next run; and a server that dies while the API runs is started again."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from app.core import local_postgres
from app.core.local_postgres import LocalPostgres

# Starts (or joins) the server in argv[1], says so, and waits.
USER = """
import sys, time
from pathlib import Path
from app.core.local_postgres import LocalPostgres

LocalPostgres(Path(sys.argv[1])).start()
print("up", flush=True)
if sys.argv[2] == "wait":
    time.sleep(600)
"""


def _postmaster(pgdata: Path) -> psutil.Process | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().split()[0])
    return psutil.Process(pid) if psutil.pid_exists(pid) else None


def _run_user(pgdata: Path, then: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", USER, str(pgdata), then],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "up"
    return process


def _watcher(pgdata: Path) -> psutil.Process:
    [watcher] = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and "app.core.local_postgres" in p.info["cmdline"]
        and str(pgdata) in p.info["cmdline"]
    ]
    return watcher


def test_a_killed_runs_server_is_stopped_by_its_watcher(tmp_path):
    """kill -9 of the only user (make dev): its watcher stops the server, nothing is left."""
    pgdata = tmp_path / "pgdata"
    killed = _run_user(pgdata, "wait")
    server, watcher = _postmaster(pgdata), _watcher(pgdata)
    assert server is not None
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    try:
        server.wait(timeout=15)
        watcher.wait(timeout=5)
        assert (pgdata / ".handle_pids.json").read_text() == "[]"
    finally:
        if server.is_running():
            server.kill()


def test_a_killed_runs_server_is_kept_for_its_other_users(tmp_path):
    pgdata = tmp_path / "pgdata"
    staying = _run_user(pgdata, "wait")
    killed = _run_user(pgdata, "wait")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    server = _postmaster(pgdata)
    try:
        time.sleep(1)  # its watcher has done its work
        assert server is not None and server.is_running()
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == [staying.pid]
    finally:
        staying.send_signal(signal.SIGTERM)
        staying.wait()
        if server is not None and server.is_running():
            server.kill()


def test_a_server_left_behind_is_adopted_and_stopped_by_the_next_run(tmp_path):
    """Its watcher killed too: the next run adopts the server and stops it on exit."""
    pgdata = tmp_path / "pgdata"
    crashed = _run_user(pgdata, "wait")
    _watcher(pgdata).kill()
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    server = _postmaster(pgdata)
    assert server is not None and server.is_running()  # left behind

    try:
        _run_user(pgdata, "exit").wait()  # the next run, the last user: stops it on exit
        server.wait(timeout=10)
        assert (pgdata / ".handle_pids.json").read_text() == "[]"
    finally:
        if server.is_running():
            server.kill()


@pytest.fixture
def local(tmp_path):
    local = LocalPostgres(tmp_path / "pgdata")
    url = local.start()
    yield local, url
    local.server.cleanup()


async def _answers(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_a_server_that_dies_is_started_again(local, monkeypatch):
    postgres, url = local
    assert not postgres.revive()  # running: nothing to do
    monkeypatch.setattr(local_postgres, "REVIVE_EVERY_S", 0.1)
    revived = asyncio.Event()

    async def on_revived() -> None:
        revived.set()

    keeper = asyncio.create_task(postgres.keep_running(on_revived))
    try:
        dead = _postmaster(postgres.pgdata)
        assert dead is not None
        dead.kill()
        dead.wait(timeout=10)
        with pytest.raises(OSError):
            await _answers(url)
        await asyncio.wait_for(revived.wait(), timeout=30)
        assert await _answers(url)
    finally:
        keeper.cancel()
