"""Monitoring of a stack: an uptime check on the API's `/readiness` (the API can serve: its
database answers), alerts when it fails, when too many responses are 5xx, when the 95th
percentile latency is high, and, for a stack's own Cloud SQL instance, when its CPU or disk
runs high; all to an email channel when one is configured (`pulumi up` warns when none is);
and an optional monthly billing budget."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.config import MonitoringConfig, Scope

HELD = "300s"  # how long a threshold must be crossed before an alert opens
Aggregation = gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgsDict
RATE: Aggregation = {"per_series_aligner": "ALIGN_RATE", "cross_series_reducer": "REDUCE_SUM"}


def _threshold(
    name: str,
    metric_filter: pulumi.Input[str],
    value: float,
    aggregation: Aggregation,
    duration: str = HELD,
    denominator_filter: pulumi.Input[str] | None = None,
) -> gcp.monitoring.AlertPolicyConditionArgsDict:
    """An alert condition: `metric_filter` aggregated per minute (`aggregation`: aligner and
    reducer), above `value` for `duration`; with `denominator_filter`, the ratio of the two
    series, aggregated alike."""
    per_minute: Aggregation = {"alignment_period": "60s", **aggregation}
    threshold: gcp.monitoring.AlertPolicyConditionConditionThresholdArgsDict = {
        "filter": metric_filter,
        "comparison": "COMPARISON_GT",
        "threshold_value": value,
        "duration": duration,
        "aggregations": [per_minute],
    }
    if denominator_filter is not None:
        threshold["denominator_filter"] = denominator_filter
        threshold["denominator_aggregations"] = [per_minute]
    return {"display_name": name, "condition_threshold": threshold}


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        monitoring: MonitoringConfig,
        *,
        api_url: pulumi.Input[str],
        service_name: pulumi.Input[str],
        database_instance: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`database_instance`: the stack's own Cloud SQL instance (None for Supabase)."""
        super().__init__("tandem:infra:Monitoring", name, None, opts)
        child = children(self, opts)
        host = pulumi.Output.from_input(api_url).apply(lambda url: url.removeprefix("https://"))
        uptime = gcp.monitoring.UptimeCheckConfig(
            f"{name}-readiness",
            project=scope.project,
            display_name=f"tandem-{scope.stack} /readiness",
            timeout="10s",
            period="60s",
            http_check={"path": "/readiness", "port": 443, "use_ssl": True, "validate_ssl": True},
            monitored_resource={
                "type": "uptime_url",
                "labels": {"project_id": scope.project, "host": host},
            },
            user_labels=scope.labels,
            opts=child,
        )
        channels = []
        if monitoring.notification_email:
            channel = gcp.monitoring.NotificationChannel(
                f"{name}-email",
                project=scope.project,
                display_name=f"tandem-{scope.stack} on-call",
                type="email",
                labels={"email_address": monitoring.notification_email},
                user_labels=scope.labels,
                opts=child,
            )
            channels.append(channel.name)
        else:
            pulumi.log.warn(
                f"tandem:monitoring.notificationEmail is not set: the alerts of stack "
                f"{scope.stack} reach no one (they show in Cloud Monitoring only)"
            )
        run = pulumi.Output.format(
            'resource.type="cloud_run_revision" AND resource.label.service_name="{0}"',
            service_name,
        )
        requests = pulumi.Output.format(
            '{0} AND metric.type="run.googleapis.com/request_count"', run
        )
        conditions = {
            "readiness-failing": _threshold(
                "uptime check on /readiness failing",
                uptime.uptime_check_id.apply(
                    lambda check: (
                        'metric.type="monitoring.googleapis.com/uptime_check/check_passed" '
                        f'AND metric.label.check_id="{check}" AND resource.type="uptime_url"'
                    )
                ),
                1,  # more than one checking region fails
                {
                    "per_series_aligner": "ALIGN_NEXT_OLDER",
                    "cross_series_reducer": "REDUCE_COUNT_FALSE",
                    "group_by_fields": ["resource.label.*"],
                },
                duration="120s",
            ),
            "5xx": _threshold(
                f"more than {monitoring.max_5xx_ratio:.0%} of responses are 5xx",
                pulumi.Output.format('{0} AND metric.label.response_code_class="5xx"', requests),
                monitoring.max_5xx_ratio,
                RATE,
                denominator_filter=requests,
            ),
            "latency": _threshold(
                f"95th percentile latency above {monitoring.latency_p95_ms} ms",
                pulumi.Output.format(
                    '{0} AND metric.type="run.googleapis.com/request_latencies"', run
                ),
                monitoring.latency_p95_ms,
                {"per_series_aligner": "ALIGN_PERCENTILE_95"},
            ),
        }
        if database_instance is not None:
            database = pulumi.Output.format(
                'resource.type="cloudsql_database" AND resource.label.database_id="{0}:{1}"',
                scope.project,
                database_instance,
            )
            for metric, limit in (
                ("cpu", monitoring.database_cpu),
                ("disk", monitoring.database_disk),
            ):
                conditions[f"database-{metric}"] = _threshold(
                    f"Cloud SQL {metric} above {limit:.0%}",
                    pulumi.Output.format(
                        '{0} AND metric.type="cloudsql.googleapis.com/database/{1}/utilization"',
                        database,
                        metric,
                    ),
                    limit,
                    {"per_series_aligner": "ALIGN_MEAN"},
                )
        for key, condition in conditions.items():
            gcp.monitoring.AlertPolicy(
                f"{name}-{key}",
                project=scope.project,
                display_name=f"tandem-{scope.stack}: {condition['display_name']}",
                combiner="OR",
                conditions=[condition],
                notification_channels=channels,
                user_labels=scope.labels,
                opts=child,
            )
        if monitoring.billing_account and monitoring.monthly_budget:
            gcp.billing.Budget(
                f"{name}-budget",
                billing_account=monitoring.billing_account,
                display_name=f"tandem-{scope.stack}",
                budget_filter={"projects": [f"projects/{scope.project}"]},
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
