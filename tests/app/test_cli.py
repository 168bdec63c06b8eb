"""`python -m app`: migrate, create-api-key (the key alone on the last line), and bad settings."""

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT, controlled_backend, make_settings, start_api


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m app ...`. Beside an API on the test's event loop, run it through
    asyncio.to_thread: a row the API's background work had locked when the loop stopped would
    stay locked, and the command wait on it (retention once did, for 60 s)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "ENVIRONMENT": "test", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_created_key_works_against_the_api(database_url):
    created = run_cli("create-api-key", "--name", "cli", DATABASE_URL=database_url)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("tdm_")
    async for api in start_api(make_settings(database_url), controlled_backend()):
        ok = await api.client.get(
            "/v1/users/u/conversations", headers={"Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200
        assert key not in "".join(str(v) for v in ok.headers.values())


def test_migrate_and_downgrade(database_url):
    assert run_cli("migrate", DATABASE_URL=database_url).returncode == 0
    down = run_cli("downgrade", "base", DATABASE_URL=database_url)
    assert down.returncode == 0
    assert "downgraded to base" in down.stdout
    assert run_cli("migrate", DATABASE_URL=database_url).returncode == 0


def test_bad_settings_fail_with_the_setting_named():
    result = run_cli("migrate", ENVIRONMENT="prod", DATABASE_URL="")
    assert result.returncode != 0
    assert "invalid settings" in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path):
    result = run_cli("migrate", DATABASE_URL=f"postgresql://postgres@/db?host={tmp_path}")
    assert result.returncode != 0
    assert "database is unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error():
    result = run_cli("explode")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
