"""Objects in a GCS bucket. Signed URLs are V4, signed with the credentials' key, or through
the IAM signBlob API with the runtime service account on Cloud Run (no key files)."""

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import google.auth
from google.api_core.exceptions import GoogleAPICallError, NotFound
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import Request
from google.cloud import storage
from requests import RequestException

from app.storage.base import ObjectNotFound, Storage, StorageUnavailable, prefixed


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """GCS's refusals (a missing bucket, a denied account) and network failures as
    StorageUnavailable, with GCS's message."""
    try:
        yield
    except GoogleAPICallError as exc:
        raise StorageUnavailable(f"GCS refused: {exc.message}") from None
    except (GoogleAuthError, RequestException) as exc:
        raise StorageUnavailable(f"GCS unreachable: {type(exc).__name__}") from None


class GcsStorage(Storage):
    """Objects in a GCS bucket under `prefix`."""

    def __init__(self, bucket: str, prefix: str = "", credentials=None, client=None) -> None:
        """`credentials` sign URLs (default: the environment's, as `client` uses them)."""
        if credentials is None:
            credentials, _project = google.auth.default()
        self.credentials = credentials
        self.client = client or storage.Client(credentials=credentials)
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/")

    def _blob(self, key: str) -> storage.Blob:
        return self.bucket.blob(prefixed(self.prefix, key))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        blob = self._blob(key)
        with _refusals():
            blob.upload_from_string(data, content_type=content_type)

    def get(self, key: str) -> bytes:
        blob = self._blob(key)
        with _refusals():
            try:
                return blob.download_as_bytes()
            except NotFound:
                raise ObjectNotFound(f"no object {key!r}") from None

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        with _refusals(), contextlib.suppress(NotFound):
            blob.delete()

    def listed(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        with _refusals():
            for blob in self.client.list_blobs(self.bucket, prefix=full):
                yield blob.name.removeprefix(f"{self.prefix}/" if self.prefix else ""), blob.updated

    def check(self) -> None:
        # Listing needs only storage.objects.list, which the API's account holds on the bucket.
        with _refusals():
            next(iter(self.client.list_blobs(self.bucket, prefix=self.prefix, max_results=1)), None)

    def signed_url(self, key: str, ttl_s: int) -> str:
        return self._signed(key, ttl_s, "GET")

    def signed_upload_url(self, key: str, ttl_s: int, content_type: str) -> str:
        return self._signed(key, ttl_s, "PUT", content_type)

    def _signed(self, key: str, ttl_s: int, method: str, content_type: str | None = None) -> str:
        """A V4 signed URL for `method` on the object (an upload's must carry `content_type`)."""
        credentials = self.credentials
        options: dict = {"credentials": credentials, "content_type": content_type}
        with _refusals():
            if not hasattr(credentials, "sign_bytes"):
                # Cloud Run's metadata credentials hold no key: sign through IAM signBlob as the
                # runtime service account (it holds iam.serviceAccountTokenCreator on itself).
                credentials.refresh(Request())
                options |= {
                    "service_account_email": credentials.service_account_email,
                    "access_token": credentials.token,
                }
            return self._blob(key).generate_signed_url(
                version="v4", expiration=timedelta(seconds=ttl_s), method=method, **options
            )
