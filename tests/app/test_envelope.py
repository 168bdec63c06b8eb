"""Envelope encryption of tenants' RunPod keys (app/core/envelope.py): sealed per tenant, bound
to it, opened after a KEK rotation and wrapped again; bad keyrings refused; the local KEK made
once; and the API without KEKs outside local mode takes no tenant keys."""

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from sqlalchemy import delete, insert, select

from app.core.db import make_engine
from app.core.envelope import Keyring, KeyringError, Sealed
from app.core.errors import NotConfigured
from app.core.migrations import migrate
from app.models import TenantRunPodKey, WebhookSecret
from app.services import tenant_keys
from tests.conftest import controlled_backend, make_settings, start_api


def kek(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def test_a_secret_opens_for_its_tenant_only_and_never_lies_in_the_clear():
    keyring = Keyring.parse(f"one:{kek(1)}")
    sealed = keyring.seal("rpa_SECRET_KEY", "tenant-a")
    assert b"rpa_SECRET_KEY" not in sealed.ciphertext + sealed.wrapped_key
    assert sealed.kek_id == "one"
    assert keyring.open(sealed, "tenant-a") == "rpa_SECRET_KEY"
    with pytest.raises(KeyringError, match="another tenant's"):
        keyring.open(sealed, "tenant-b")  # a row copied to another tenant does not open
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    with pytest.raises(KeyringError, match="altered"):
        keyring.open(replace(sealed, ciphertext=sealed.ciphertext[:-1] + flipped), "tenant-a")
    again = keyring.seal("rpa_SECRET_KEY", "tenant-a")
    assert again.ciphertext != sealed.ciphertext  # a data key and nonce of its own each time


def test_a_rotation_opens_the_old_and_wraps_it_again_with_the_new():
    old = Keyring.parse(f"g1:{kek(1)}")
    sealed = old.seal("rpa_KEY", "t")
    rotated = Keyring.parse(f"g2:{kek(2)}, g1:{kek(1)}")  # the first one seals
    assert rotated.current == "g2" and rotated.open(sealed, "t") == "rpa_KEY"
    rewrapped = rotated.rewrap(sealed)
    assert rewrapped.kek_id == "g2" and rewrapped.ciphertext == sealed.ciphertext
    assert Keyring.parse(f"g2:{kek(2)}").open(rewrapped, "t") == "rpa_KEY"
    with pytest.raises(KeyringError, match="'g1' is not in TENANT_KEY_ENCRYPTION_KEYS"):
        Keyring.parse(f"g3:{kek(3)}").open(sealed, "t")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("g1:not-base64!", "'g1' is not base64"),
        (kek(1), "give each KEK as id:base64"),
        (f"g1:{base64.b64encode(b'short').decode()}", "a KEK is 32 bytes"),
    ],
)
def test_a_bad_keyring_is_refused_naming_what_to_fix(value, words):
    with pytest.raises(KeyringError, match=words):
        Keyring.parse(value)


def test_the_local_kek_is_made_once_for_its_owner_even_by_racing_processes(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        keyrings = list(pool.map(lambda _: Keyring.local(tmp_path / "home"), range(8)))
    assert len({tuple(k.keks.items()) for k in keyrings}) == 1
    [path] = (tmp_path / "home").iterdir()  # no draft left behind
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sealed = keyrings[0].seal("rpa_KEY", "t")
    assert Keyring.local(tmp_path / "home").open(sealed, "t") == "rpa_KEY"


async def test_a_deployed_api_without_keks_takes_no_tenant_key(database_url):
    deployed = {"environment": "prod", "signing_secret": "s"}
    settings = make_settings(database_url, **deployed)
    assert tenant_keys.keyring_of(settings) is None
    with pytest.raises(NotConfigured, match="TENANT_KEY_ENCRYPTION_KEYS is unset"):
        await tenant_keys.register(None, settings, None, "t", "rpa_KEY")  # type: ignore[arg-type]
    keks = f"p:{kek(7)}"
    keyring = tenant_keys.keyring_of(
        make_settings(database_url, **deployed, tenant_key_encryption_keys=keks)
    )
    assert keyring is not None and keyring.current == "p"
    assert keyring.open(keyring.seal("rpa_KEY", "t"), "t") == "rpa_KEY"


async def test_two_rotations_before_a_restart_leave_the_api_starting(database_url, caplog):
    """KEKs g1 -> g2 -> g3 with no start between: what g1 sealed opens with none of g3 and
    g2. The API still starts; those rows are logged and left as they are (their tenants
    register again, or rotate); what g2 sealed is wrapped with g3; a webhook secret an earlier
    release kept in plain text is sealed."""
    engine = make_engine(database_url, pool_size=1)
    await migrate(engine, make_settings(database_url))
    old, previous = Keyring.parse(f"g1:{kek(1)}"), Keyring.parse(f"g2:{kek(2)}")
    lost, kept = old.seal("rpa_LOST", "t-lost"), previous.seal("rpa_KEPT", "t-kept")
    async with engine.begin() as conn:
        for tenant, sealed in (("t-lost", lost), ("t-kept", kept)):
            await conn.execute(
                insert(TenantRunPodKey).values(
                    tenant=tenant,
                    ciphertext=sealed.ciphertext,
                    wrapped_key=sealed.wrapped_key,
                    kek_id=sealed.kek_id,
                    hint="KEPT",
                )
            )
        await conn.execute(insert(WebhookSecret).values(tenant="t-kept", secret="whsec_plain"))
    await engine.dispose()
    keks = f"g3:{kek(3)},g2:{kek(2)}"
    settings = make_settings(database_url, tenant_key_encryption_keys=keks)
    async for api in start_api(settings, controlled_backend()):
        assert (await api.client.get("/health")).status_code == 200
        keyring = api.app.state.deployments.keyring
        async with api.app.state.engine.connect() as conn:
            rows = {
                row.tenant: row
                for row in (await conn.execute(select(TenantRunPodKey))).all()
                if row.tenant.startswith("t-")
            }
            secret = await conn.scalar(
                select(WebhookSecret.secret).where(WebhookSecret.tenant == "t-kept")
            )
    assert rows["t-lost"].kek_id == "g1"  # left as it was
    assert "tenant t-lost: its RunPod key is left as it is" in caplog.text
    assert rows["t-kept"].kek_id == "g3"
    sealed = Sealed(rows["t-kept"].ciphertext, rows["t-kept"].wrapped_key, "g3")
    assert keyring.open(sealed, "t-kept") == "rpa_KEPT"
    assert secret.startswith("sealed:g3:") and "whsec_plain" not in secret
    assert tenant_keys.open_sealed(keyring, secret, "t-kept") == "whsec_plain"
    async with api.app.state.engine.begin() as conn:
        await conn.execute(delete(TenantRunPodKey).where(TenantRunPodKey.tenant.like("t-%")))
        await conn.execute(delete(WebhookSecret).where(WebhookSecret.tenant.like("t-%")))
