"""Postgres for the API: a Cloud SQL instance (or, on a review stack, a database on another
stack's instance), or an existing Supabase project. Either way `database_url` is a secret
Output the API reads as DATABASE_URL."""

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.components import children
from infra.config import StackConfig


class Database(pulumi.ComponentResource):
    def __init__(
        self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tandem:infra:Database", name, None, opts)
        child = children(self, opts)
        db = config.database
        self.instance_name: pulumi.Output[str] | None = None
        self.connection_name: pulumi.Output[str] | None = None
        if db.provider == "supabase":
            self.database_url = pulumi.Output.secret(config.secrets["supabaseDatabaseUrl"])
        else:
            if db.instance_from_stack:
                org, project = pulumi.get_organization(), pulumi.get_project()
                shared = pulumi.StackReference(
                    f"{name}-shared", stack_name=f"{org}/{project}/{db.instance_from_stack}"
                )
                instance_name = shared.require_output("database_instance")
                connection_name = shared.require_output("database_connection_name")
            else:
                instance = gcp.sql.DatabaseInstance(
                    f"{name}-instance",
                    project=config.project,
                    region=config.region,
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
                            # A public IP that only the Cloud SQL connector (IAM-authorised,
                            # with its client certificates: Cloud Run's /cloudsql) gets in by.
                            "ipv4_enabled": True,
                            "ssl_mode": "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
                        },
                        "user_labels": config.labels,
                    },
                    opts=child,
                )
                instance_name, connection_name = instance.name, instance.connection_name
            password = random.RandomPassword(
                f"{name}-password", length=32, special=False, opts=child
            )
            user = gcp.sql.User(
                f"{name}-user",
                project=config.project,
                instance=instance_name,
                name=f"tandem-{config.stack}",
                password=password.result,
                opts=child,
            )
            # After the user, so it is deleted before it: the user owns the tables the
            # migrations made, and Postgres cannot drop a role that still owns objects.
            database = gcp.sql.Database(
                f"{name}-database",
                project=config.project,
                instance=instance_name,
                name=f"tandem_{config.stack.replace('-', '_')}",
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
