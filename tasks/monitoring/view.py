"""What the portal and the scorecards read from monitoring, behind one small interface.

Monitoring (alert rules, firing alerts) is a part of the platform that may
not be set up. The portal shows a service's firing alerts and the scorecard
checks that alert rules exist; both ask a `MonitoringView` and nothing else.
Until monitoring is configured, `monitoring_view` returns `NoMonitoring`,
which answers "not configured" rather than "no alerts": a quiet dashboard
must never be mistaken for a healthy one. Once `slipway up` has configured
it, `PrometheusMonitoring` answers:

- ``firing``: the service's active, unsilenced alerts, from Alertmanager's API;
- ``rule_count``: the alert rules that watch it, from Prometheus' rules API:
  its own group (``service-<name>``) and the platform's rules for every service.

Each answer is None, never an empty list, when the part cannot be asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx

from slipway.errors import MonitoringError
from slipway.http import shared_client
from tasks.monitoring.layout import MonitoringLayout
from tasks.monitoring.prometheus import firing_alerts

__all__ = [
    "FiringAlert",
    "MonitoringView",
    "NoMonitoring",
    "PrometheusMonitoring",
    "monitoring_view",
]


@dataclass(frozen=True)
class FiringAlert:
    """One alert that fires now for a service."""

    name: str
    severity: str
    environment: str
    summary: str = ""
    since: datetime | None = None
    url: str = ""
    """Where to see it in the monitoring system, if it has a UI."""


class MonitoringView(Protocol):
    """The questions the platform asks monitoring about one service."""

    @property
    def configured(self) -> bool:
        """Whether monitoring is set up at all."""

    @property
    def status(self) -> str:
        """One line for people: where monitoring is, or why it is not there."""

    def rule_count(self, service: str) -> int | None:
        """How many alert rules watch ``service``; None when that cannot be known."""

    def firing(self, service: str) -> list[FiringAlert] | None:
        """The alerts firing now for ``service``; None when that cannot be known."""


class NoMonitoring:
    """The answer while the platform has no monitoring: nothing is known, and it says why."""

    configured = False
    status = "monitoring not configured"

    def rule_count(self, service: str) -> int | None:
        """Unknown: there is no monitoring to ask."""
        return None

    def firing(self, service: str) -> list[FiringAlert] | None:
        """Unknown: there is no monitoring to ask."""
        return None


def monitoring_view() -> MonitoringView:
    """The platform's monitoring; `NoMonitoring` while none is configured.

    Configured means `slipway up` wrote Prometheus' config under this home
    (`PrometheusMonitoring` then asks it).
    """
    layout = MonitoringLayout.from_env()
    if not layout.prometheus_config.exists():
        return NoMonitoring()
    return PrometheusMonitoring(layout)


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
            response = shared_client().get(
                f"{self._layout.prometheus_url}/api/v1/rules",
                params={"type": "alert"},
                auth=self._layout.basic_auth(),
                timeout=3,
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
            found = firing_alerts(
                self._layout.alertmanager_url, service, auth=self._layout.basic_auth(), timeout=3
            )
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
