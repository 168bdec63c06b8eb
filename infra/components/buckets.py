"""The uploads bucket: uniform access, public access prevention enforced, objects deleted
after the retention days, versioned in prod (a deleted or overwritten upload stays recoverable
for `storage.noncurrentDays`, then its old version is deleted too), optional CORS. With
`storage.provider: supabase`, uploads go to the Supabase project's bucket instead."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.config import Scope, StackConfig, StorageConfig


def storage_env(config: StackConfig, gcs_bucket: pulumi.Input[str] | None) -> dict:
    """The API's settings for where uploads live: the stack's GCS bucket, or the Supabase
    bucket with the stack's objects in a folder of its own (stacks may share the bucket)."""
    if config.storage.provider == "gcs":
        return {"STORAGE_MODE": "gcs", "GCS_BUCKET": gcs_bucket}
    return {
        "STORAGE_MODE": "supabase",
        "SUPABASE_URL": config.storage.supabase_url,
        "SUPABASE_BUCKET": config.storage.supabase_bucket,
        "STORAGE_PREFIX": config.stack,
    }


class Buckets(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        storage: StorageConfig,
        *,
        versioned: bool,
        force_destroy: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`force_destroy`: the bucket may be deleted with its objects (review stacks)."""
        super().__init__("tandem:infra:Buckets", name, None, opts)
        rules: list[gcp.storage.BucketLifecycleRuleArgsDict] = [
            {"action": {"type": "Delete"}, "condition": {"age": storage.retention_days}}
        ]
        if versioned:  # without it, what the age rule deletes lives on as noncurrent versions
            rules.append(
                {
                    "action": {"type": "Delete"},
                    "condition": {"days_since_noncurrent_time": storage.noncurrent_days},
                }
            )
        self.uploads = gcp.storage.Bucket(
            f"{name}-uploads",
            name=f"{scope.project}-tandem-{scope.stack}-uploads",
            project=scope.project,
            location=scope.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": versioned},
            lifecycle_rules=rules,
            cors=[
                {
                    "origins": storage.cors_origins,
                    "methods": ["GET", "PUT"],
                    "response_headers": ["Content-Type"],
                    "max_age_seconds": 3600,
                }
            ]
            if storage.cors_origins
            else None,
            force_destroy=force_destroy,
            labels=scope.labels,
            opts=children(self, opts),
        )
        self.register_outputs({"uploads_bucket": self.uploads.name})
