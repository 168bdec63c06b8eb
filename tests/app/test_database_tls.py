"""DATABASE_CA_CERT and DATABASE_POOL_MODE (a managed Postgres such as Supabase): the tests'
real Postgres behind TLS only, with a certificate for `localhost` from a CA made here; the API's
engine verifies it and its host name, as libpq's verify-full does, and refuses another CA's or
another name's. Transaction mode's connection arguments run the API's own queries."""

import asyncio
import datetime
import ssl
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from app.core.db import connect_args, make_engine
from app.core.errors import DatabaseUnavailable
from app.main import create_app
from tests.conftest import app_client, controlled_backend, make_settings, start_api


def certificate(name: str, key, issuer_name: str, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    return certificate(name, key, name, key, ca=True), key


SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # Postgres protocol: "may we speak TLS?"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def tls_postgres(postgres, tmp_path):
    """The tests' Postgres behind TLS, as Supabase's pooler puts it (its Postgres build has no
    TLS of its own): a relay on 127.0.0.1 that answers Postgres's SSLRequest, speaks TLS with a
    certificate for `localhost` from a CA made here, and refuses clients that do not ask for
    TLS; (its port, the CA in PEM, the TLS versions of the sessions it relayed)."""
    ca, ca_key = make_ca("Tandem test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "server.crt").write_text(
        pem(certificate("localhost", key, "Tandem test CA", ca_key, ca=False))
    )
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    socket_path = postgres.get_postmaster_info().socket_path
    sessions: list[str] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readexactly(8) != SSL_REQUEST:
            writer.close()
            return
        writer.write(b"S")
        await writer.drain()
        try:
            await writer.start_tls(context)
        except (ssl.SSLError, ConnectionError):  # the client did not trust the certificate
            writer.close()
            return
        sessions.append(writer.get_extra_info("ssl_object").version())
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(socket_path)
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], pem(ca), sessions
    server.close()


async def query(url: str, **settings) -> int:
    engine = make_engine(url, 1, connect_args(make_settings(url, **settings)))
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()
    finally:
        await engine.dispose()


async def test_the_servers_certificate_and_name_are_verified(tls_postgres):
    port, ca, sessions = tls_postgres
    url = f"postgresql+asyncpg://postgres@localhost:{port}/postgres"
    assert await query(url, database_ca_cert=ca) == 1
    assert len(sessions) == 1 and sessions[0].startswith("TLSv1.")


async def test_without_tls_there_is_no_connection(tls_postgres):
    port, _, sessions = tls_postgres
    with pytest.raises(DatabaseUnavailable):
        await query(f"postgresql+asyncpg://postgres@localhost:{port}/postgres?ssl=disable")
    assert sessions == []


@pytest.mark.parametrize("where", ["another CA", "another host name"])
async def test_a_certificate_that_does_not_check_out_is_refused(tls_postgres, where):
    port, ca, sessions = tls_postgres
    host = "127.0.0.1" if where == "another host name" else "localhost"  # the cert says localhost
    if where == "another CA":
        ca = pem(make_ca("Someone else's CA")[0])
    url = f"postgresql+asyncpg://postgres@{host}:{port}/postgres"
    with pytest.raises(DatabaseUnavailable) as refused:
        await query(url, database_ca_cert=ca)
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
    assert sessions == []


def test_a_ca_that_is_not_pem_is_named():
    with pytest.raises(ValueError, match="DATABASE_CA_CERT is not a PEM certificate"):
        connect_args(make_settings(None, database_ca_cert="-----BEGIN nonsense"))


async def test_transaction_mode_serves_the_api_without_a_statement_cache(database_url):
    args = connect_args(make_settings(database_url, database_pool_mode="transaction"))
    assert (args["statement_cache_size"], args["prepared_statement_cache_size"]) == (0, 0)
    assert args["prepared_statement_name_func"]() != args["prepared_statement_name_func"]()
    settings = make_settings(database_url, database_pool_mode="transaction")
    async for api in start_api(settings, controlled_backend()):
        for n in range(3):  # the same statements again: nothing cached to collide with
            chat = await api.post("/v1/chat", json={"user_id": "pooled", "message": f"hi {n}"})
            assert chat.status_code == 200, chat.text
        listed = await api.get("/v1/users/pooled/conversations")
        assert len(listed.json()["conversations"]) == 3


async def test_readiness_says_why_the_certificate_was_refused(tls_postgres, caplog):
    """The open endpoint says the database check failed; the log says why, never the
    password."""
    port, _, _ = tls_postgres
    url = f"postgresql+asyncpg://postgres:s3cret@localhost:{port}/postgres"
    ca = pem(make_ca("Someone else's CA")[0])
    settings = make_settings(url, database_ca_cert=ca, migrate_on_start=False)
    async with app_client(create_app(settings, controlled_backend())) as client:
        response = await client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "failed"
        assert "database failed: SSLCertVerificationError: " in caplog.text
        assert "certificate verify failed" in caplog.text and "s3cret" not in caplog.text
