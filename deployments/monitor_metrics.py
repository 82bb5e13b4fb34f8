"""The platform's own metrics, as Prometheus scrapes them from the monitor process.

Most are counted from Prefect's event stream (`PlatformMetrics.observe`):
flow runs by deployment and state, release durations, deployments by
outcome, drift and new findings. The open findings by severity are read from
the newest default-branch scan of each service (`scan_findings`). The webhook
queue is the bridge's own ``/metrics``, scraped directly.

Alert rules look at the ``*_last_timestamp_seconds`` gauges rather than at a
counter's increase: a counter that first appears at 1 has no increase.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "FINAL_STATES", "RELEASE_FLOWS", "PlatformMetrics"]

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format."""
FINAL_STATES = frozenset({"Completed", "Failed", "Crashed", "Cancelled"})
"""Flow run states a run never leaves."""
RELEASE_FLOWS = frozenset({"build-test-deploy", "promote", "rollback"})
"""The flows whose runs are releases."""

_RELEASE_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600)


class PlatformMetrics:
    """The monitor's counters and gauges, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        run = ["flow", "deployment", "state"]
        self.run_states = Counter(
            "slipway_flow_run_states", "Flow runs that entered each state.", run, registry=r
        )
        self.runs = Gauge(
            "slipway_flow_runs", "Flow runs now in each non-final state.", run, registry=r
        )
        self.release_seconds = Histogram(
            "slipway_release_duration_seconds",
            "From start to end of each release run (build-test-deploy, promote, rollback).",
            ["flow", "service", "environment", "state"],
            buckets=_RELEASE_BUCKETS,
            registry=r,
        )
        env = ["service", "environment"]
        self.deployments = Counter(
            "slipway_deployments",
            "Deployments recorded, by action and outcome.",
            [*env, "action", "outcome"],
            registry=r,
        )
        self.deployment_last = Gauge(
            "slipway_deployment_last_timestamp_seconds",
            "When the last deployment of each outcome was recorded (Unix time).",
            [*env, "outcome"],
            registry=r,
        )
        self.drift = Counter("slipway_drift_detected", "Drift found.", env, registry=r)
        self.drift_last = Gauge(
            "slipway_drift_last_timestamp_seconds", "When drift was last found.", env, registry=r
        )
        self._security(r)
        self._monitor(r)
        self._active: dict[str, tuple[str, str, str]] = {}

    def _security(self, r: CollectorRegistry) -> None:
        """The security scans' findings: new ones reported, and what the newest scan holds."""
        finding = ["service", "severity"]
        self.findings_new = Counter(
            "slipway_security_findings_new", "New findings reported.", finding, registry=r
        )
        self.finding_last = Gauge(
            "slipway_security_finding_last_timestamp_seconds",
            "When a new finding of each severity was last reported.",
            finding,
            registry=r,
        )
        self.scan_findings = Gauge(
            "slipway_scan_findings",
            "Open findings of the newest default-branch scan, by severity.",
            finding,
            registry=r,
        )

    def _monitor(self, r: CollectorRegistry) -> None:
        """The monitor's own work: alerts turned into events, and the event stream."""
        self.alerts = Counter(
            "slipway_alert_notifications",
            "Alerts received from Alertmanager and turned into events.",
            ["status"],
            registry=r,
        )
        self.events_connected = Gauge(
            "slipway_monitor_event_stream_up",
            "1 while the monitor follows Prefect's event stream.",
            registry=r,
        )

    def observe(
        self,
        name: str,
        resource: Mapping[str, str],
        related: Sequence[Mapping[str, str]],
        payload: Mapping[str, Any],
        timestamp: float,
    ) -> None:
        """Count one Prefect event: a flow run's state change or a Slipway event."""
        if name.startswith("prefect.flow-run."):
            self._flow_run(name.removeprefix("prefect.flow-run."), resource, related)
        elif name.startswith("slipway.deployment."):
            service, environment = (
                str(payload.get("service", "")),
                str(payload.get("environment", "")),
            )
            outcome = str(payload.get("outcome", ""))
            self.deployments.labels(
                service, environment, str(payload.get("action", "")), outcome
            ).inc()
            self.deployment_last.labels(service, environment, outcome).set(timestamp)
        elif name == "slipway.drift.detected":
            labels = (resource.get("slipway.service", ""), resource.get("slipway.environment", ""))
            self.drift.labels(*labels).inc()
            self.drift_last.labels(*labels).set(timestamp)
        elif name == "slipway.security.finding":
            labels = (str(payload.get("service", "")), str(payload.get("severity", "")))
            self.findings_new.labels(*labels).inc()
            self.finding_last.labels(*labels).set(timestamp)

    def _flow_run(
        self, state: str, resource: Mapping[str, str], related: Sequence[Mapping[str, str]]
    ) -> None:
        roles = {
            r.get("prefect.resource.role", ""): r.get("prefect.resource.name", "") for r in related
        }
        run_id = resource.get("prefect.resource.id", "")
        labels = (roles.get("flow", ""), roles.get("deployment", ""))
        self.run_states.labels(*labels, state).inc()
        previous = self._active.pop(run_id, None)
        if previous is not None:
            self.runs.labels(*previous).dec()
        if state not in FINAL_STATES:
            self._active[run_id] = (*labels, state)
            self.runs.labels(*labels, state).inc()

    def observe_release(
        self, flow: str, parameters: Mapping[str, Any], state: str, seconds: float
    ) -> None:
        """Record how long one release run took."""
        service = str(parameters.get("service", ""))
        environment = str(parameters.get("environment") or parameters.get("to_env") or "dev")
        self.release_seconds.labels(flow, service, environment, state).observe(seconds)

    def set_scan_findings(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Replace the open-findings gauge: service -> severity -> count."""
        self.scan_findings.clear()
        for service, by_severity in counts.items():
            for severity, count in by_severity.items():
                self.scan_findings.labels(service, severity).set(count)

    def render(self) -> bytes:
        """Everything, in Prometheus' text format."""
        return generate_latest(self.registry)
