"""Scheduled work: the retention job (`python -m app retention`) as a Cloud Run job on the
API's image, account, env and Cloud SQL mount, run daily by Cloud Scheduler through the Cloud
Run Admin API as an account that may only run this job."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.components.api_service import ApiService
from infra.config import StackConfig


class Jobs(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        image: pulumi.Input[str],
        api: ApiService,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tandem:infra:Jobs", name, None, opts)
        child = children(self, opts)
        days = str(config.storage.retention_days)
        self.retention = gcp.cloudrunv2.Job(
            f"{name}-retention",
            name=f"tandem-{config.stack}-retention",
            project=config.project,
            location=config.region,
            deletion_protection=config.api.deletion_protection,
            labels=config.labels,
            template={
                "labels": config.labels,
                "task_count": 1,
                "template": {
                    "service_account": api.account.email,
                    "max_retries": 1,
                    "timeout": "1800s",
                    "volumes": api.volumes,
                    "containers": [
                        {
                            "image": image,
                            "commands": ["python"],
                            "args": ["-m", "app", "retention"],
                            "envs": [*api.envs, {"name": "RETENTION_RAW_DAYS", "value": days}],
                            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                            "volume_mounts": api.volume_mounts,
                        }
                    ],
                },
            },
            opts=children(self, opts, after=api.access),  # it runs as the API's account
        )
        self.scheduler, member, _ = service_account(name, config, "jobs", (), child)
        gcp.cloudrunv2.JobIamMember(
            f"{name}-scheduler-runs-retention",
            project=config.project,
            location=config.region,
            name=self.retention.name,
            role="roles/run.invoker",
            member=member,
            opts=child,
        )
        run_url = pulumi.Output.concat(
            f"https://run.googleapis.com/v2/projects/{config.project}/locations/",
            f"{config.region}/jobs/",
            self.retention.name,
            ":run",
        )
        self.schedule = gcp.cloudscheduler.Job(
            f"{name}-retention-daily",
            name=f"tandem-{config.stack}-retention-daily",
            project=config.project,
            region=config.region,
            description=f"Deletes uploads older than {days} days (python -m app retention)",
            schedule=config.storage.retention_schedule,
            time_zone="Etc/UTC",
            attempt_deadline="320s",
            retry_config={"retry_count": 1},
            http_target={
                "http_method": "POST",
                "uri": run_url,
                "oauth_token": {
                    "service_account_email": self.scheduler.email,
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            opts=child,
        )
        self.register_outputs({"retention_job": self.retention.name})
