"""Object storage for uploads behind one interface: a local directory or a GCS bucket
(`STORAGE_MODE=local|gcs`).

Workers download objects through time-limited signed URLs: V4 signed URLs on GCS (signed with
the credentials' key, or through the IAM signBlob API with the runtime service account on Cloud
Run: no key files), and on the local directory an HMAC-signed URL that the API itself serves.
"""

import contextlib
import hashlib
import hmac
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

from app.core.config import Settings


class StorageError(Exception):
    """An object that cannot be stored or read; the message says which and why."""


class ObjectNotFound(StorageError):
    pass


def checked_key(key: str) -> str:
    """`key` if it is a plain relative path (no `..`, no leading `/`, no empty parts)."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return str(path)


class Storage(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; one that is already gone is not an error."""

    @abstractmethod
    def signed_url(self, key: str, ttl_s: int) -> str:
        """A URL that reads the object without other credentials until `ttl_s` from now."""

    @abstractmethod
    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """The keys under `prefix` (e.g. `documents/`), each with when it was written."""


def object_url_prefix(base_url: str) -> str:
    """Where an API at `base_url` serves the objects of its local storage."""
    return f"{base_url.rstrip('/')}/v1/objects/"


class LocalStorage(Storage):
    """Objects as files under `root`; signed URLs point at the API's `/v1/objects/{key}`."""

    def __init__(self, root: Path, base_url: str, secret: bytes) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half an object

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}|{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_url(self, key: str, ttl_s: int) -> str:
        expires = int(time.time()) + ttl_s
        query = urlencode({"expires": expires, "signature": self._signature(key, expires)})
        return f"{object_url_prefix(self.base_url)}{quote(checked_key(key))}?{query}"

    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        for path in (self.root / prefix).rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                yield path.relative_to(self.root).as_posix(), written

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """Whether a signed URL's `expires` and `signature` are valid for `key` now."""
        if expires < time.time() or not signature.isascii():  # a hex digest is ASCII
            return False
        return hmac.compare_digest(self._signature(key, expires), signature)


class GcsStorage(Storage):
    """Objects in a GCS bucket under `prefix`."""

    def __init__(self, bucket: str, prefix: str = "", credentials=None, client=None) -> None:
        """`credentials` sign URLs (default: the environment's, as `client` uses them)."""
        from google.cloud import storage  # the API image has it; local mode never imports it

        if credentials is None:
            import google.auth

            credentials, _project = google.auth.default()
        self.credentials = credentials
        self.client = client or storage.Client(credentials=credentials)
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/")

    def _blob(self, key: str):
        name = f"{self.prefix}/{checked_key(key)}" if self.prefix else checked_key(key)
        return self.bucket.blob(name)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._blob(key).upload_from_string(data, content_type=content_type)

    def get(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self._blob(key).download_as_bytes()
        except NotFound:
            raise ObjectNotFound(f"no object {key!r}") from None

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._blob(key).delete()

    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        for blob in self.client.list_blobs(self.bucket, prefix=full):
            yield blob.name.removeprefix(f"{self.prefix}/" if self.prefix else ""), blob.updated

    def signed_url(self, key: str, ttl_s: int) -> str:
        credentials = self.credentials
        options: dict = {"credentials": credentials}
        if not hasattr(credentials, "sign_bytes"):
            # Cloud Run's metadata credentials hold no key: sign through IAM signBlob as the
            # runtime service account (it holds iam.serviceAccountTokenCreator on itself).
            from google.auth.transport.requests import Request

            credentials.refresh(Request())
            options |= {
                "service_account_email": credentials.service_account_email,
                "access_token": credentials.token,
            }
        return self._blob(key).generate_signed_url(
            version="v4", expiration=timedelta(seconds=ttl_s), method="GET", **options
        )


def make_storage(settings: Settings) -> Storage:
    """The storage STORAGE_MODE names."""
    if settings.storage_mode == "gcs":
        if not settings.gcs_bucket:
            raise ValueError("STORAGE_MODE=gcs needs GCS_BUCKET")
        return GcsStorage(settings.gcs_bucket, settings.gcs_prefix)
    if settings.embedding_hmac_secret is not None:
        secret = settings.embedding_hmac_secret.get_secret_value().encode()
    else:  # URLs then hold for this process only, which is also the one serving them
        secret = secrets.token_bytes(32)
    root = settings.storage_dir or settings.tandem_home / "objects"
    return LocalStorage(root, settings.public_url, secret)
