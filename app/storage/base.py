"""What every object store gives the API: put, get, delete, list, signed URLs to read and to
upload, and the errors they raise."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath


class StorageError(Exception):
    """An object that cannot be stored or read; the message says which and why."""


class ObjectNotFound(StorageError):
    pass


class StorageUnavailable(StorageError):
    """The store refused or could not be reached (a missing bucket, a refused key); the
    message holds the store's own reason and never a credential."""


def checked_key(key: str) -> str:
    """`key` if it is a plain relative path (no `..`, no leading `/`, no empty parts)."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return str(path)


def prefixed(prefix: str, key: str) -> str:
    """The name of `key` under `prefix` (a folder path, or empty for none)."""
    return f"{prefix}/{checked_key(key)}" if prefix else checked_key(key)


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
    def signed_upload_url(self, key: str, ttl_s: int, content_type: str) -> str:
        """A URL that takes one PUT of the object's bytes (with `content_type`) without other
        credentials, until `ttl_s` from now (Supabase Storage: its own fixed two hours)."""

    @abstractmethod
    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """The keys under `prefix` (e.g. `documents/`), each with when it was written."""

    @abstractmethod
    def check(self) -> None:
        """StorageUnavailable unless objects can be stored (readiness)."""
