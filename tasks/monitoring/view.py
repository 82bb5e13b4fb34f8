"""The portal's and scorecards' view of monitoring (`tasks.alert_view.MonitoringView`), over Prometheus.

- ``firing``: the service's active, unsilenced alerts, from Alertmanager's API;
- ``rule_count``: the alert rules that watch it, from Prometheus' rules API:
  its own group (``service-<name>``) and the platform's rules for every service.

Each answer is None, never an empty list, when the part cannot be asked: a
quiet dashboard must not pass for a healthy one.
"""

from __future__ import annotations

from datetime import datetime

import httpx

from slipway.errors import MonitoringError
from tasks.alert_view import FiringAlert
from tasks.monitoring.layout import MonitoringLayout
from tasks.monitoring.prometheus import firing_alerts

__all__ = ["PrometheusMonitoring"]


class PrometheusMonitoring:
    """Monitoring as `slipway up` runs it for one home."""

    configured = True

    def __init__(self, layout: MonitoringLayout) -> None:
        self._layout = layout

    @property
    def status(self) -> str:
        """Where people find Prometheus and Alertmanager."""
        return (
            f"Prometheus {self._layout.prometheus_url}, "
            f"Alertmanager {self._layout.alertmanager_url}"
        )

    def rule_count(self, service: str) -> int | None:
        """Alert rules of ``service``'s group plus the platform's rules for every service."""
        try:
            response = httpx.get(
                f"{self._layout.prometheus_url}/api/v1/rules", params={"type": "alert"}, timeout=3
            )
            groups = response.raise_for_status().json()["data"]["groups"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        count = 0
        for group in groups:
            for rule in group.get("rules", []):
                labels = rule.get("labels", {})
                own = group.get("name") == f"service-{service}"
                shared = labels.get("audience") == "team" and "service" not in labels
                count += own or shared
        return count

    def firing(self, service: str) -> list[FiringAlert] | None:
        """The alerts firing now for ``service``, oldest first."""
        try:
            found = firing_alerts(self._layout.alertmanager_url, service, timeout=3)
        except MonitoringError:
            return None
        return [
            FiringAlert(
                name=a.name,
                severity=a.severity,
                environment=a.environment,
                summary=a.summary,
                since=_time(a.since),
                url=a.link,
            )
            for a in found
        ]


def _time(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
