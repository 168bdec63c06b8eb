"""Upload storage: the local directory, GCS (against gcp-storage-emulator) and Supabase Storage
(against tests/supabase_storage.py), behind one interface, with signed URLs for the workers."""

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.storage import LocalStorage, ObjectNotFound, StorageError, StorageUnavailable
from app.storage.gcs import GcsStorage
from app.storage.supabase import SupabaseStorage
from tests.conftest import free_port
from tests.supabase_storage import FakeSupabaseStorage, service_key


@pytest.fixture
def local(tmp_path):
    return LocalStorage(tmp_path / "objects", "http://api.test", b"signing-secret")


@pytest.fixture(scope="module")
def gcs_emulator():
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="uploads")
    threading.Thread(target=server.start, daemon=True).start()
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    yield host
    server.stop()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST")
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


def service_account_credentials():
    """Credentials with a key made here, as a service-account key file would give them."""
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "tandem-test-api@project.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "k1",
        "token_uri": "https://oauth2.googleapis.com/token",
        "project_id": "project",
    }
    return service_account.Credentials.from_service_account_info(json.loads(json.dumps(info)))


@pytest.fixture
def gcs(gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(credentials=AnonymousCredentials(), project="project")
    return GcsStorage(
        "uploads", "dev/raw", credentials=service_account_credentials(), client=client
    )


@pytest.fixture(scope="module")
def supabase_server():
    with FakeSupabaseStorage(buckets=("uploads", "other")) as server:
        yield server
        assert server.violations == []


@pytest.fixture
def supabase(supabase_server):
    return SupabaseStorage(supabase_server.url, service_key(), "uploads", "dev/raw")


@pytest.fixture(params=["local", "gcs", "supabase"])
def store(request):
    return request.getfixturevalue(request.param)


def test_put_get_delete(store):
    store.put("docs/a.txt", b"hello", "text/plain")
    assert store.get("docs/a.txt") == b"hello"
    store.put("docs/a.txt", b"replaced", "text/plain")
    assert store.get("docs/a.txt") == b"replaced"
    store.delete("docs/a.txt")
    with pytest.raises(ObjectNotFound, match=r"docs/a\.txt"):
        store.get("docs/a.txt")
    store.delete("docs/a.txt")  # already gone: not an error


def test_listed_gives_the_keys_under_a_prefix_with_when_they_were_written(store):
    before = datetime.now(UTC) - timedelta(minutes=1)
    store.put("listed/a.txt", b"a", "text/plain")
    store.put("listed/deeper/b.txt", b"b", "text/plain")
    store.put("elsewhere/c.txt", b"c", "text/plain")
    listed = dict(store.listed("listed/"))
    assert sorted(listed) == ["listed/a.txt", "listed/deeper/b.txt"]
    assert all(
        before < written <= datetime.now(UTC) + timedelta(minutes=1) for written in listed.values()
    )
    for key in ("listed/a.txt", "listed/deeper/b.txt", "elsewhere/c.txt"):
        store.delete(key)
    assert list(store.listed("listed/")) == []


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/./b"])
def test_keys_that_escape_or_are_empty_are_refused(store, key):
    with pytest.raises(StorageError, match="invalid object key"):
        store.put(key, b"x", "text/plain")


def test_gcs_keeps_objects_under_the_prefix(gcs):
    gcs.put("img/cat.png", b"\x89PNG", "image/png")
    names = [blob.name for blob in gcs.client.list_blobs("uploads")]
    assert "dev/raw/img/cat.png" in names
    assert gcs.bucket.blob("dev/raw/img/cat.png").exists()


def test_gcs_signed_url_is_v4_and_serves_the_object(gcs, gcs_emulator):
    gcs.put("img/cat.png", b"\x89PNG-bytes", "image/png")
    url = gcs.signed_url("img/cat.png", ttl_s=300)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["300"]
    assert query["X-Goog-Credential"][0].startswith("tandem-test-api@project.iam")
    assert urlsplit(url).path.endswith("/uploads/dev/raw/img/cat.png")
    assert httpx.get(url).content == b"\x89PNG-bytes"  # the emulator serves it (no auth check)


def test_local_signed_url_verifies_only_while_valid_and_untampered(local):
    url = local.signed_url("img/cat.png", ttl_s=60)
    parts = urlsplit(url)
    assert parts.netloc == "api.test" and parts.path == "/v1/objects/img/cat.png"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires, signature = int(query["expires"]), query["signature"]
    assert local.verify("img/cat.png", expires, signature)
    assert not local.verify("img/dog.png", expires, signature)  # another object
    assert not local.verify("img/cat.png", expires + 1, signature)  # tampered expiry
    assert not local.verify("img/cat.png", int(time.time()) - 1, signature)  # expired


def test_gcs_signed_upload_url_is_a_v4_put_bound_to_its_content_type(gcs, gcs_emulator):
    url = gcs.signed_upload_url("images/new.png", ttl_s=600, content_type="image/png")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (query["X-Goog-Algorithm"], query["X-Goog-Expires"]) == (["GOOG4-RSA-SHA256"], ["600"])
    assert parts.path.endswith("/uploads/dev/raw/images/new.png")
    # The signature covers the method and the content type (V4's canonical request): a client
    # must PUT with exactly that type.
    assert query["X-Goog-SignedHeaders"] == ["content-type;host"]
    assert url != gcs.signed_url("images/new.png", ttl_s=600)
    response = httpx.put(url, content=b"\x89PNG-new", headers={"Content-Type": "image/png"})
    assert response.status_code == 200  # the emulator takes it (it checks no signature)
    assert gcs.get("images/new.png") == b"\x89PNG-new"


def test_local_upload_urls_and_read_urls_are_not_interchangeable(local):
    def signed(url: str) -> tuple[int, str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        return int(query["expires"]), query["signature"]

    upload = signed(local.signed_upload_url("img/new.png", 60, "image/png"))
    read = signed(local.signed_url("img/new.png", 60))
    assert local.verify("img/new.png", *upload, upload=True)
    assert not local.verify("img/new.png", *upload)  # an upload URL reads nothing
    assert not local.verify("img/new.png", *read, upload=True)  # a read URL writes nothing
    assert not local.verify("img/other.png", *upload, upload=True)


# -- Supabase Storage ------------------------------------------------------------------------
def test_supabase_signed_upload_url_puts_the_object(supabase, supabase_server):
    url = supabase.signed_upload_url("images/new.png", ttl_s=600, content_type="image/png")
    assert urlsplit(url).path == "/storage/v1/object/upload/sign/uploads/dev/raw/images/new.png"
    response = httpx.put(url, content=b"\x89PNG-new", headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    stored = supabase_server.buckets["uploads"]["dev/raw/images/new.png"]
    assert (stored.data, stored.content_type) == (b"\x89PNG-new", "image/png")
    assert supabase.get("images/new.png") == b"\x89PNG-new"
    again = httpx.put(url, content=b"again", headers={"Content-Type": "image/png"})
    assert again.status_code == 200  # a part sent once more writes it again
    assert supabase.get("images/new.png") == b"again"
    forged = url.replace("images/new.png", "images/forged.png")
    assert httpx.put(forged, content=b"x").json()["message"] == "The url do not match the signature"
    assert supabase_server.violations == []


def test_supabase_keeps_objects_under_the_prefix(supabase, supabase_server):
    supabase.put("img/cat.png", b"\x89PNG", "image/png")
    assert "dev/raw/img/cat.png" in supabase_server.names()
    assert supabase_server.buckets["uploads"]["dev/raw/img/cat.png"].content_type == "image/png"


def test_supabase_signed_url_serves_the_object_for_its_ttl_only(supabase, supabase_server):
    import jwt

    supabase.put("img/cat.png", b"\x89PNG-bytes", "image/png")
    url = supabase.signed_url("img/cat.png", ttl_s=300)
    parts = urlsplit(url)
    assert parts.path == "/storage/v1/object/sign/uploads/dev/raw/img/cat.png"
    response = httpx.get(url)  # no key: the token is the authorization
    assert (response.status_code, response.content) == (200, b"\x89PNG-bytes")
    token = parse_qs(parts.query)["token"][0]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    other = url.replace("img/cat.png", "img/dog.png")  # the token is for one object
    assert httpx.get(other).json()["message"] == "The url do not match the signature"
    with pytest.raises(ObjectNotFound):
        supabase.signed_url("img/none.png", ttl_s=60)


def test_supabase_lists_folder_by_folder_and_page_by_page(supabase, monkeypatch):
    import app.storage.supabase

    monkeypatch.setattr(app.storage.supabase, "PAGE", 2)
    keys = [f"paged/{n}.txt" for n in range(5)] + ["paged/deep/er/x.txt"]
    for key in keys:
        supabase.put(key, b"x", "text/plain")
    assert sorted(dict(supabase.listed("paged/"))) == sorted(keys)
    for key in keys:
        supabase.delete(key)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda url: SupabaseStorage(url, service_key(), "missing"), "Bucket not found"),
        (
            lambda url: SupabaseStorage(url, service_key("another-projects-secret" * 2), "uploads"),
            "Signature verification failed",
        ),
        (
            lambda url: SupabaseStorage("http://127.0.0.1:9", service_key(), "uploads"),
            "ConnectError",
        ),
    ],
)
def test_supabase_refusals_say_why_without_the_key(supabase_server, make, words):
    storage = make(supabase_server.url)
    for call in (storage.check, lambda: storage.put("a.txt", b"a", "text/plain")):
        with pytest.raises(StorageUnavailable, match=words) as refused:
            call()
        assert service_key() not in str(refused.value)


def test_every_store_checks_it_can_take_objects(store):
    store.check()


def test_unusable_stores_fail_their_check(tmp_path, gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    (tmp_path / "file").write_text("not a directory")
    local = LocalStorage(tmp_path / "file" / "objects", "http://api.test", b"s")
    with pytest.raises(StorageUnavailable, match="cannot create"):
        local.check()
    client = storage.Client(credentials=AnonymousCredentials(), project="project")
    gcs = GcsStorage("no-such-bucket", credentials=service_account_credentials(), client=client)
    with pytest.raises(StorageUnavailable, match="GCS refused"):
        gcs.check()
    with pytest.raises(StorageUnavailable, match="GCS refused"):
        gcs.put("a.txt", b"a", "text/plain")
