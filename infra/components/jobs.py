"""Scheduled work: the retention job (`python -m app retention`) as a Cloud Run job run as the
API runs (its `RunSpec`: image, account, env, Cloud SQL mount), daily, by Cloud Scheduler
through the Cloud Run Admin API as an account that may only run this job."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.components.run_spec import Env, RunSpec, api_job
from infra.config import Scope, StorageConfig


class Jobs(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        storage: StorageConfig,
        *,
        run: RunSpec,
        deletion_protection: bool,
        scheduler_email: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`scheduler_email`: an existing account for Cloud Scheduler to run the job as (a
        review stack's base stack's), else one of its own (`self.scheduler`)."""
        super().__init__("tandem:infra:Jobs", name, None, opts)
        child = children(self, opts)
        days: Env = {"name": "RETENTION_RAW_DAYS", "value": str(storage.retention_days)}
        self.retention = api_job(
            f"{name}-retention",
            self,
            opts,
            scope,
            run,
            "retention",
            deletion_protection=deletion_protection,
            timeout_s=1800,
            max_retries=1,
            env=[days],
        )
        self.scheduler: gcp.serviceaccount.Account | None = None
        if scheduler_email is None:
            self.scheduler, member, _ = service_account(name, scope, "jobs", (), child)
            scheduler_email = self.scheduler.email
        else:
            member = pulumi.Output.concat("serviceAccount:", scheduler_email)
        self.scheduler_email = pulumi.Output.from_input(scheduler_email)
        gcp.cloudrunv2.JobIamMember(
            f"{name}-scheduler-runs-retention",
            project=scope.project,
            location=scope.region,
            name=self.retention.name,
            role="roles/run.invoker",
            member=member,
            opts=child,
        )
        run_url = pulumi.Output.concat(
            f"https://run.googleapis.com/v2/projects/{scope.project}/locations/",
            f"{scope.region}/jobs/",
            self.retention.name,
            ":run",
        )
        self.schedule = gcp.cloudscheduler.Job(
            f"{name}-retention-daily",
            name=f"tandem-{scope.stack}-retention-daily",
            project=scope.project,
            region=scope.region,
            description=f"Deletes uploads older than {days} days (python -m app retention)",
            schedule=storage.retention_schedule,
            time_zone="Etc/UTC",
            attempt_deadline="320s",
            retry_config={"retry_count": 1},
            http_target={
                "http_method": "POST",
                "uri": run_url,
                "oauth_token": {
                    "service_account_email": scheduler_email,
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            opts=child,
        )
        self.register_outputs({"retention_job": self.retention.name})
