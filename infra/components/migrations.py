"""The database migrations as a deploy step: a Cloud Run job running `python -m app migrate`
as the API runs (its image, account, secrets and Cloud SQL mount), executed by the deploy
(`pulumi-command`, through `gcloud run jobs execute --wait`) whenever the API's image changes.
The API's new revision waits for it: a failed migration fails `pulumi up` before the service is
touched, and the old revision keeps serving."""

import pulumi
import pulumi_command as command

from infra.components import children
from infra.components.run_spec import RunSpec, api_job
from infra.config import Scope

TIMEOUT_S = 600  # one attempt at the migrations; a failure is the deploy's, not retried


class Migrations(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        *,
        run: RunSpec,
        deletion_protection: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tandem:infra:Migrations", name, None, opts)
        self.job = api_job(
            f"{name}-job",
            self,
            opts,
            scope,
            run,
            "migrate",
            deletion_protection=deletion_protection,
            timeout_s=TIMEOUT_S,
            max_retries=0,
        )
        # Run once per image (the migrations ship in it), after the job holds that image.
        self.applied = command.local.Command(
            f"{name}-applied",
            create=pulumi.Output.concat(
                "gcloud run jobs execute ",
                self.job.name,
                f" --project={scope.project} --region={scope.region} --wait --quiet",
            ),
            triggers=[run.image],
            opts=children(self, opts),
        )
        self.register_outputs({"job": self.job.name})
