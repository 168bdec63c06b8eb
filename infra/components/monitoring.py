"""An uptime check on the API's `/health`, an alert when it fails (to an email channel when one
is configured), and an optional monthly billing budget."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.config import StackConfig


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        api_url: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tandem:infra:Monitoring", name, None, opts)
        child = children(self, opts)
        host = pulumi.Output.from_input(api_url).apply(lambda url: url.removeprefix("https://"))
        uptime = gcp.monitoring.UptimeCheckConfig(
            f"{name}-health",
            project=config.project,
            display_name=f"tandem-{config.stack} /health",
            timeout="10s",
            period="60s",
            http_check={"path": "/health", "port": 443, "use_ssl": True, "validate_ssl": True},
            monitored_resource={
                "type": "uptime_url",
                "labels": {"project_id": config.project, "host": host},
            },
            user_labels=config.labels,
            opts=child,
        )
        channels = []
        if config.monitoring.notification_email:
            channel = gcp.monitoring.NotificationChannel(
                f"{name}-email",
                project=config.project,
                display_name=f"tandem-{config.stack} on-call",
                type="email",
                labels={"email_address": config.monitoring.notification_email},
                user_labels=config.labels,
                opts=child,
            )
            channels.append(channel.name)
        gcp.monitoring.AlertPolicy(
            f"{name}-health-failing",
            project=config.project,
            display_name=f"tandem-{config.stack}: /health failing",
            combiner="OR",
            conditions=[
                {
                    "display_name": "uptime check failing",
                    "condition_threshold": {
                        "filter": uptime.uptime_check_id.apply(
                            lambda check: (
                                'metric.type="monitoring.googleapis.com/uptime_check/'
                                f'check_passed" AND metric.label.check_id="{check}" '
                                'AND resource.type="uptime_url"'
                            )
                        ),
                        "comparison": "COMPARISON_GT",
                        "threshold_value": 1,
                        "duration": "120s",
                        "aggregations": [
                            {
                                "alignment_period": "60s",
                                "per_series_aligner": "ALIGN_NEXT_OLDER",
                                "cross_series_reducer": "REDUCE_COUNT_FALSE",
                                "group_by_fields": ["resource.label.*"],
                            }
                        ],
                    },
                }
            ],
            notification_channels=channels,
            user_labels=config.labels,
            opts=child,
        )
        monitoring = config.monitoring
        if monitoring.billing_account and monitoring.monthly_budget:
            gcp.billing.Budget(
                f"{name}-budget",
                billing_account=monitoring.billing_account,
                display_name=f"tandem-{config.stack}",
                budget_filter={"projects": [f"projects/{config.project}"]},
                amount={
                    "specified_amount": {
                        "currency_code": "USD",
                        "units": str(int(monitoring.monthly_budget)),
                    }
                },
                threshold_rules=[{"threshold_percent": 0.5}, {"threshold_percent": 0.9}],
                opts=child,
            )
        self.register_outputs({"uptime_check": uptime.uptime_check_id})
