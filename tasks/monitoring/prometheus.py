"""Prometheus' and Alertmanager's HTTP APIs, as the platform reads them.

- `Prometheus.value`: one number from an instant query (release analysis);
- `firing_alerts`: the alerts that fire now for a service, from
  Alertmanager's API v2, for the portal and for people (silenced and
  inhibited ones left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx

from slipway.errors import MonitoringError
from slipway.http import shared_client
from slipway.names import check_dns_label

__all__ = ["FiringAlert", "Prometheus", "firing_alerts", "service_alerts"]

_HINT = "check `slipway status`: Prometheus and Alertmanager run under `slipway up`"


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server's query API."""

    url: str
    """E.g. ``http://127.0.0.1:9090``."""
    auth: tuple[str, str] | None = field(default=None, repr=False)
    """User and password, where it requires a login (`MonitoringLayout.basic_auth`)."""
    timeout: float = 5.0

    def ready(self) -> bool:
        """Whether it answers ``/-/ready``."""
        try:
            ready = shared_client().get(f"{self.url}/-/ready", auth=self.auth, timeout=self.timeout)
            return ready.is_success
        except httpx.HTTPError:
            return False

    def series(self, promql: str) -> list[dict[str, str]]:
        """The label sets of an instant query's result.

        Raises:
            MonitoringError: Prometheus is unreachable or refused the query.
        """
        return [r["metric"] for r in self._query(promql)]

    def value(self, promql: str) -> float | None:
        """The single number an instant query gives; None for no data (or NaN).

        Raises:
            MonitoringError: Prometheus is unreachable or refused the query.
        """
        result = self._query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise MonitoringError(f"{promql!r} gave {len(result)} series, not one")
        number = float(result[0]["value"][1])
        return None if math.isnan(number) else number

    def _query(self, promql: str) -> list[dict[str, Any]]:
        try:
            response = shared_client().get(
                f"{self.url}/api/v1/query",
                params={"query": promql},
                auth=self.auth,
                timeout=self.timeout,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as e:
            raise MonitoringError(
                f"Prometheus at {self.url} did not answer: {e}", hint=_HINT
            ) from e
        if body.get("status") != "success":
            raise MonitoringError(
                f"Prometheus refused {promql!r}: {body.get('error', response.text[:300])}"
            )
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@dataclass(frozen=True)
class FiringAlert:
    """One alert that fires now."""

    name: str
    """The alert rule, e.g. ``SlipwayServiceDown``."""
    service: str
    environment: str
    severity: str
    summary: str
    since: str
    """When it started firing (RFC 3339)."""
    link: str
    """Its expression in Prometheus' graph UI."""


def firing_alerts(
    alertmanager_url: str,
    service: str,
    *,
    environment: str | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 5.0,
) -> list[FiringAlert]:
    """The active, unsilenced alerts of ``service`` (in ``environment``), oldest first.

    ``auth`` is the user and password where Alertmanager requires a login.

    Raises:
        MonitoringError: Alertmanager is unreachable or answered an error.
    """
    matchers = [f'service="{check_dns_label(service, what="service")}"']
    if environment is not None:
        matchers.append(f'environment="{check_dns_label(environment, what="environment")}"')
    params: list[tuple[str, str | int | float | bool | None]] = [("filter", m) for m in matchers]
    params += [("active", True), ("silenced", False), ("inhibited", False)]
    try:
        response = shared_client().get(
            f"{alertmanager_url}/api/v2/alerts", params=params, auth=auth, timeout=timeout
        )
        response.raise_for_status()
        alerts = response.json()
    except (httpx.HTTPError, ValueError) as e:
        raise MonitoringError(
            f"Alertmanager at {alertmanager_url} did not answer: {e}", hint=_HINT
        ) from e
    found = [
        FiringAlert(
            name=a["labels"].get("alertname", ""),
            service=a["labels"].get("service", ""),
            environment=a["labels"].get("environment", ""),
            severity=a["labels"].get("severity", ""),
            summary=a.get("annotations", {}).get("summary", ""),
            since=a.get("startsAt", ""),
            link=a.get("generatorURL", ""),
        )
        for a in alerts
        if a.get("status", {}).get("state") == "active"
    ]
    return sorted(found, key=lambda a: (a.since, a.name))


def service_alerts(service: str, *, environment: str | None = None) -> list[FiringAlert]:
    """`firing_alerts` of ``service`` from this home's Alertmanager (``SLIPWAY_ALERTMANAGER_PORT``).

    For the portal and the CLI, which run beside `slipway up`.

    Raises:
        MonitoringError: Alertmanager is not running or not answering.
    """
    from tasks.monitoring.layout import MonitoringLayout

    layout = MonitoringLayout.from_env()
    return firing_alerts(
        layout.alertmanager_url, service, environment=environment, auth=layout.basic_auth()
    )
