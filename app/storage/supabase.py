"""Objects in a Supabase Storage bucket, through the official client (`supabase`). Signed URLs
are Supabase's own: a JWT in the query that Storage checks, so workers need no key."""

import contextlib
from collections.abc import Iterator
from datetime import datetime

import httpx
from storage3.exceptions import StorageApiError
from storage3.types import CreateSignedUploadUrlOptions
from supabase import ClientOptions, create_client

from app.storage.base import ObjectNotFound, Storage, StorageUnavailable, prefixed

PAGE = 1000  # entries per list request


@contextlib.contextmanager
def _refusals(key: str | None = None) -> Iterator[None]:
    """Storage's refusals (a missing bucket, a refused key) and network failures as
    StorageUnavailable with Storage's message; a missing `key` as ObjectNotFound."""
    try:
        yield
    except StorageApiError as exc:
        # Storage answers `{statusCode, error, message}`; a missing object is 404 "not_found"
        # (a missing bucket is 404 too, with the error "Bucket not found").
        if key is not None and str(exc.status) == "404" and exc.code == "not_found":
            raise ObjectNotFound(f"no object {key!r}") from None
        raise StorageUnavailable(f"Supabase Storage refused: {exc.message}") from None
    except httpx.HTTPError as exc:
        raise StorageUnavailable(f"Supabase Storage unreachable: {type(exc).__name__}") from None


class SupabaseStorage(Storage):
    """Objects in the Supabase bucket `bucket` under `prefix`, written with the project's
    secret (service role) key."""

    def __init__(self, url: str, key: str, bucket: str, prefix: str = "") -> None:
        options = ClientOptions(httpx_client=httpx.Client(timeout=30), auto_refresh_token=False)
        self.client = create_client(url, key, options)
        self.bucket_id = bucket
        self.bucket = self.client.storage.from_(bucket)
        self.prefix = prefix.strip("/")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        name = prefixed(self.prefix, key)
        with _refusals():
            self.bucket.upload(name, data, {"content-type": content_type, "upsert": "true"})

    def get(self, key: str) -> bytes:
        name = prefixed(self.prefix, key)
        with _refusals(key):
            return self.bucket.download(name)

    def delete(self, key: str) -> None:
        name = prefixed(self.prefix, key)
        with _refusals():
            self.bucket.remove([name])  # a missing object is simply not in the answer

    def signed_url(self, key: str, ttl_s: int) -> str:
        name = prefixed(self.prefix, key)
        with _refusals(key):
            url = self.bucket.create_signed_url(name, ttl_s)["signedURL"]
        if url is None:
            raise StorageUnavailable(f"Supabase Storage signed no URL for {key!r}")
        return url

    def signed_upload_url(self, key: str, ttl_s: int, content_type: str) -> str:
        """Storage's signed upload URL (valid its own two hours), which may write the object
        again (a job part sent once more)."""
        name = prefixed(self.prefix, key)
        with _refusals(key):
            options = CreateSignedUploadUrlOptions(upsert="true")
            return self.bucket.create_signed_upload_url(name, options)["signed_url"]

    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        # Storage lists one folder at a time: files, and folders as entries without an id.
        start = f"{self.prefix}/{prefix}" if self.prefix else prefix
        folders = [start.rstrip("/")]
        while folders:
            folder = folders.pop()
            for offset in range(0, 1 << 62, PAGE):
                with _refusals():
                    entries = self.bucket.list(folder, {"limit": PAGE, "offset": offset})
                for entry in entries:
                    name = f"{folder}/{entry['name']}" if folder else entry["name"]
                    if entry.get("id") is None:
                        folders.append(name)
                    else:
                        key = name.removeprefix(f"{self.prefix}/" if self.prefix else "")
                        yield key, datetime.fromisoformat(entry["updated_at"])
                if len(entries) < PAGE:
                    break

    def check(self) -> None:
        with _refusals():
            self.client.storage.get_bucket(self.bucket_id)
