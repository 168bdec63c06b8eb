"""Object storage for uploads behind one interface (`Storage`): a local directory, a GCS
bucket or a Supabase Storage bucket (`STORAGE_MODE=local|gcs|supabase`). Workers read objects
through time-limited signed URLs."""

import secrets

from app.core import keys
from app.core.config import Settings
from app.storage.base import ObjectNotFound, Storage, StorageError, StorageUnavailable
from app.storage.local import LocalStorage, object_url_prefix

__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "make_storage",
    "object_url_prefix",
]


def make_storage(settings: Settings) -> Storage:
    """The storage STORAGE_MODE names (the cloud clients are imported only when chosen)."""
    if settings.storage_mode == "gcs":
        from app.storage.gcs import GcsStorage

        if not settings.gcs_bucket:
            raise ValueError("STORAGE_MODE=gcs needs GCS_BUCKET")
        return GcsStorage(settings.gcs_bucket, settings.storage_prefix)
    if settings.storage_mode == "supabase":
        from app.storage.supabase import SupabaseStorage

        if not (settings.supabase_url and settings.supabase_service_key):
            raise ValueError("STORAGE_MODE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_KEY")
        key = settings.supabase_service_key.get_secret_value()
        return SupabaseStorage(
            settings.supabase_url, key, settings.supabase_bucket, settings.storage_prefix
        )
    # Without a signing secret, URLs hold for this process only, which is also the one serving.
    signing = settings.signing_key(keys.SIGNED_URLS)
    secret = signing.encode() if signing is not None else secrets.token_bytes(32)
    root = settings.storage_dir or settings.tandem_home / "objects"
    return LocalStorage(root, settings.public_url, secret)
