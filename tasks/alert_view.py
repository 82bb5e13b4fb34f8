"""What the portal and the scorecards read from monitoring, behind one small interface.

Monitoring (alert rules, firing alerts) is a part of the platform that may
not be set up. The portal shows a service's firing alerts and the scorecard
checks that alert rules exist; both ask a `MonitoringView` and nothing else.
Until monitoring is configured, `monitoring_view` returns `NoMonitoring`,
which answers "not configured" rather than "no alerts": a quiet dashboard
must never be mistaken for a healthy one.

To plug monitoring in, implement `MonitoringView` (e.g. over Alertmanager's
``/api/v2/alerts`` and Prometheus' ``/api/v1/rules``) and return it from
`monitoring_view` when its settings exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["FiringAlert", "MonitoringView", "NoMonitoring", "monitoring_view"]


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
    (`tasks.monitoring.view.PrometheusMonitoring` then asks it).
    """
    from tasks.monitoring.layout import MonitoringLayout

    layout = MonitoringLayout.from_env()
    if not layout.prometheus_config.exists():
        return NoMonitoring()
    from tasks.monitoring.view import PrometheusMonitoring

    return PrometheusMonitoring(layout)
