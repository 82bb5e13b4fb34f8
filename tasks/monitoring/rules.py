"""The alert rules the platform ships: one group for the platform, one per service.

Every alert carries ``service`` and ``environment`` (where it has them) and an
``audience`` label: ``team`` alerts go to the service's owning team,
``platform`` alerts to the platform team, who run the pipeline they concern.
Thresholds come from the `MonitoringSettings` block, per service where it has
an override; `promtool check rules` accepts every file this module writes
(tests check it).

The deploy-failed, drift and finding alerts look at when the platform last
saw such an event (`deployments.monitor` exports the timestamps), not at a
counter's increase: a counter that first appears at 1 has no increase.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from blocks.monitoring import MonitoringSettings
from slipway.names import NameDumper

__all__ = ["SERVICE_DOWN", "duration", "platform_rules", "service_rules", "to_yaml"]

SERVICE_DOWN = "SlipwayServiceDown"
"""The alert that fires when a service's health probe fails."""

_DURATION_UNITS = (("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float) -> str:
    """Prometheus' duration: ``90`` -> ``1m30s``, ``0.5`` -> ``500ms``."""
    if seconds <= 0:
        return "0s"
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    left, parts = millis // 1000, []
    for unit, size in _DURATION_UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


def _alert(
    name: str,
    expr: str,
    *,
    for_seconds: float,
    severity: str,
    audience: str,
    summary: str,
    description: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration(for_seconds),
        "labels": {"severity": severity, "audience": audience},
        "annotations": {"summary": summary, "description": description},
    }


_WHERE = "{{ $labels.service }} in {{ $labels.environment }}"


def platform_rules(settings: MonitoringSettings) -> dict[str, Any]:
    """Service down (every service) and the platform's own alerts."""
    rules = [*_every_service(settings), *_platform_events(settings), *_platform_parts(settings)]
    return {"groups": [{"name": "slipway-platform", "rules": rules}]}


def _every_service(settings: MonitoringSettings) -> list[dict[str, Any]]:
    """What each service's team hears of, whatever the service: down, or no /metrics."""
    where = _WHERE
    return [
        _alert(
            SERVICE_DOWN,
            'probe_success{job="probes"} == 0',
            for_seconds=settings.down_for_seconds,
            severity="critical",
            audience="team",
            summary=f"{where} is down",
            description="Its health URL {{ $labels.instance }} has not answered 2xx for "
            f"{duration(settings.down_for_seconds)}.",
        ),
        _alert(
            "SlipwayServiceMetricsMissing",
            'up{job="services"} == 0',
            for_seconds=300,
            severity="warning",
            audience="team",
            summary=f"{where} serves no /metrics",
            description="Prometheus cannot scrape {{ $labels.instance }}/metrics: update the "
            "service to the current template (update-service-template) and redeploy.",
        ),
    ]


def _platform_events(settings: MonitoringSettings) -> list[dict[str, Any]]:
    """The platform team hears of a failed deployment, a drift or a new finding."""
    window = duration(settings.event_alert_seconds)
    since = f"time() - {{}} < {settings.event_alert_seconds:g}"
    where = _WHERE
    return [
        _alert(
            "SlipwayDeployFailed",
            since.format('slipway_deployment_last_timestamp_seconds{outcome="failed"}'),
            for_seconds=0,
            severity="warning",
            audience="platform",
            summary=f"A deployment of {where} failed",
            description=f"A release failed within the last {window}; the previous version serves.",
        ),
        _alert(
            "SlipwayDriftDetected",
            since.format("slipway_drift_last_timestamp_seconds"),
            for_seconds=0,
            severity="warning",
            audience="platform",
            summary=f"{where} drifted from its declared state",
            description=f"The drift check found a difference within the last {window}.",
        ),
        _alert(
            "SlipwayNewSecurityFinding",
            since.format(
                'slipway_security_finding_last_timestamp_seconds{severity=~"high|critical"}'
            ),
            for_seconds=0,
            severity="warning",
            audience="platform",
            summary="New {{ $labels.severity }} finding in {{ $labels.service }}",
            description=f"The security scan found a new finding within the last {window}.",
        ),
    ]


def _platform_parts(settings: MonitoringSettings) -> list[dict[str, Any]]:
    """The platform's own parts: the webhook queue, signatures, a component that is down."""
    return [
        _alert(
            "SlipwayWebhookQueueStuck",
            f"max(slipway_intake_oldest_waiting_seconds) > {settings.webhook_queue_stuck_seconds:g}",
            for_seconds=60,
            severity="critical",
            audience="platform",
            summary="Webhook deliveries are not being delivered",
            description="The oldest queued push has waited {{ $value | humanizeDuration }}; "
            "check Prefect and logs/bridge.log.",
        ),
        _alert(
            "SlipwaySignatureFailuresSpiking",
            "sum(rate(slipway_bridge_signature_failures_total[5m])) * 60 > "
            f"{settings.signature_failures_per_minute:g}",
            for_seconds=60,
            severity="warning",
            audience="platform",
            summary="Many webhook deliveries carry a bad signature",
            description="{{ $value | humanize }} per minute: a sender has the wrong secret, "
            "or someone probes the bridge.",
        ),
        _alert(
            "SlipwayComponentDown",
            'up{job="platform"} == 0',
            for_seconds=60,
            severity="critical",
            audience="platform",
            summary="{{ $labels.component }} does not answer",
            description="Prometheus cannot scrape {{ $labels.instance }}; see `slipway status`.",
        ),
    ]


def service_rules(settings: MonitoringSettings, services: Iterable[str]) -> dict[str, Any]:
    """A group per service: its 5xx ratio and p95 latency, with its own thresholds."""
    window = duration(settings.rate_window_seconds)
    groups = []
    for service in sorted(set(services)):
        ratio, latency = settings.thresholds(service)
        match = f'job="services", service="{service}"'
        requests = f"sum by (service, environment) (rate(http_requests_total{{{match}}}[{window}]))"
        errors = requests.replace(f"{{{match}}}", f'{{{match}, status=~"5.."}}')
        buckets = (
            "sum by (service, environment, le) "
            f"(rate(http_request_duration_seconds_bucket{{{match}}}[{window}]))"
        )
        where = "{{ $labels.service }} in {{ $labels.environment }}"
        rules = [
            _alert(
                "SlipwayHighErrorRatio",
                f"({errors} / {requests}) > {ratio:g}",
                for_seconds=settings.error_ratio_for_seconds,
                severity="critical",
                audience="team",
                summary=f"{where} answers too many 5xx",
                description="{{ $value | humanizePercentage }} of its answers are 5xx "
                f"(threshold {ratio:.1%}).",
            ),
            _alert(
                "SlipwayHighLatency",
                f"histogram_quantile(0.95, {buckets}) > {latency:g}",
                for_seconds=settings.latency_for_seconds,
                severity="warning",
                audience="team",
                summary=f"{where} is slow",
                description="Its p95 latency is {{ $value | humanizeDuration }} "
                f"(threshold {latency:g} s).",
            ),
        ]
        for rule in rules:  # also tells the groups' rules apart for promtool's lint
            rule["labels"]["service"] = service
        groups.append({"name": f"service-{service}", "rules": rules})
    return {"groups": groups}


def to_yaml(rules: dict[str, Any]) -> str:
    """A rule file as Prometheus reads it."""
    return yaml.dump(rules, Dumper=NameDumper, sort_keys=False, width=1000)
