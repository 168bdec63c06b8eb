"""Postgres for the API: a Cloud SQL instance (or, on a review stack, a database on its base
stack's instance), or an existing Supabase project. Either way `database_url` is a secret
Output the API reads as DATABASE_URL.

The instance is reached only through the Cloud SQL connector (Cloud Run's /cloudsql mount:
IAM-authorised, with its client certificates), on a public IP or, with `privateNetwork`, on a
private IP in that VPC network only."""

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.components import children
from infra.config import DatabaseConfig, Scope


class Database(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        db: DatabaseConfig,
        *,
        supabase_url: pulumi.Input[str] | None = None,
        shared_instance: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`supabase_url`: the Supabase connection string (provider `supabase`);
        `shared_instance`: the name and connection name of another stack's Cloud SQL instance
        to make this stack's database on (review stacks)."""
        super().__init__("tandem:infra:Database", name, None, opts)
        child = children(self, opts)
        self.instance_name: pulumi.Output[str] | None = None
        self.connection_name: pulumi.Output[str] | None = None
        if db.provider == "supabase":
            self.database_url = pulumi.Output.secret(supabase_url)
        else:
            if shared_instance:
                instance_name, connection_name = map(pulumi.Output.from_input, shared_instance)
            else:
                instance = gcp.sql.DatabaseInstance(
                    f"{name}-instance",
                    project=scope.project,
                    region=scope.region,
                    database_version="POSTGRES_16",
                    deletion_protection=db.deletion_protection,
                    settings={
                        "tier": db.tier,
                        "edition": "ENTERPRISE",
                        "availability_type": "REGIONAL" if db.high_availability else "ZONAL",
                        "backup_configuration": {
                            "enabled": True,
                            "start_time": db.backup_start_time,
                            "point_in_time_recovery_enabled": db.point_in_time_recovery,
                            "backup_retention_settings": {"retained_backups": db.backups_kept},
                        },
                        "maintenance_window": {
                            "day": db.maintenance_day,
                            "hour": db.maintenance_hour,
                            "update_track": "stable",
                        },
                        "insights_config": {"query_insights_enabled": db.query_insights},
                        # IAM users may sign in (the connector checks IAM either way).
                        "database_flags": [{"name": "cloudsql.iam_authentication", "value": "on"}],
                        "deletion_protection_enabled": db.deletion_protection,
                        "ip_configuration": {
                            "ipv4_enabled": db.private_network is None,
                            "private_network": db.private_network,
                            "ssl_mode": "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
                        },
                        "user_labels": scope.labels,
                    },
                    opts=child,
                )
                instance_name, connection_name = instance.name, instance.connection_name
            password = random.RandomPassword(
                f"{name}-password", length=32, special=False, opts=child
            )
            user = gcp.sql.User(
                f"{name}-user",
                project=scope.project,
                instance=instance_name,
                name=f"tandem-{scope.stack}",
                password=password.result,
                # On another stack's instance (a review stack), teardown must not stop at a role
                # Postgres refuses to drop ("some objects depend on it": grants made in other
                # databases): the role is left behind, owning nothing once its database is gone.
                deletion_policy="ABANDON" if shared_instance else None,
                opts=child,
            )
            # After the user, so it is deleted before it: the user owns the tables the
            # migrations made, and Postgres cannot drop a role that still owns objects.
            database = gcp.sql.Database(
                f"{name}-database",
                project=scope.project,
                instance=instance_name,
                name=f"tandem_{scope.stack.replace('-', '_')}",
                opts=children(self, opts, after=[user]),
            )
            self.instance_name, self.connection_name = instance_name, connection_name
            self.database_url = pulumi.Output.secret(
                pulumi.Output.format(
                    "postgresql://{0}:{1}@/{2}?host=/cloudsql/{3}",
                    user.name,
                    password.result,
                    database.name,
                    connection_name,
                )
            )
        self.register_outputs(
            {
                "database_url": self.database_url,
                "instance_name": self.instance_name,
                "connection_name": self.connection_name,
            }
        )
