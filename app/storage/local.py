"""Objects as files in a directory, with signed URLs that the API itself serves
(`/v1/objects/{key}`, an HMAC of the key, expiry and whether it uploads)."""

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from app.storage.base import ObjectNotFound, Storage, StorageUnavailable, checked_key


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

    def _signature(self, key: str, expires: int, upload: bool) -> str:
        message = f"{key}|{expires}" + ("|put" if upload else "")  # a read URL cannot write
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def _signed(self, key: str, ttl_s: int, upload: bool) -> str:
        expires = int(time.time()) + ttl_s
        signature = self._signature(key, expires, upload)
        query = urlencode({"expires": expires, "signature": signature})
        return f"{object_url_prefix(self.base_url)}{quote(checked_key(key))}?{query}"

    def signed_url(self, key: str, ttl_s: int) -> str:
        return self._signed(key, ttl_s, upload=False)

    def signed_upload_url(self, key: str, ttl_s: int, content_type: str) -> str:
        """A URL the API's `PUT /v1/objects/{key}` takes (the stored file's type is its key's)."""
        return self._signed(key, ttl_s, upload=True)

    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        for path in (self.root / prefix).rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                yield path.relative_to(self.root).as_posix(), written

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"{self.root} is not writable")

    def verify(self, key: str, expires: int, signature: str, upload: bool = False) -> bool:
        """Whether a signed URL's `expires` and `signature` are valid for `key` now (to read
        it, or with `upload` to write it)."""
        if expires < time.time() or not signature.isascii():  # a hex digest is ASCII
            return False
        return hmac.compare_digest(self._signature(key, expires, upload), signature)
