"""The Prefect events that tell people things, and the resource labels that route them.

Every notifiable event is about a resource labelled ``slipway.team``: the
team's automation (`tasks.monitoring.automations`) matches on that label and
sends through the team's channel. Alerts from Alertmanager become
``slipway.alert.firing`` and ``slipway.alert.resolved`` events here; the
platform's own events (deployments, approvals, drift, findings) get the label
from `team_labels` where they are emitted.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.monitoring.teams import PLATFORM_TEAM, team_of

__all__ = [
    "ALERT_FIRING",
    "ALERT_RESOLVED",
    "APPROVAL_WAITING",
    "NOTIFIED_EVENTS",
    "Alert",
    "AlertNotice",
    "alert_event",
    "emit_approval_waiting",
    "team_labels",
]

logger = logging.getLogger(__name__)

ALERT_FIRING = "slipway.alert.firing"
ALERT_RESOLVED = "slipway.alert.resolved"
APPROVAL_WAITING = "slipway.approval.waiting"
NOTIFIED_EVENTS = (
    ALERT_FIRING,
    ALERT_RESOLVED,
    "slipway.deployment.succeeded",
    "slipway.deployment.failed",
    "slipway.deployment.rolled-back",
    APPROVAL_WAITING,
    "slipway.drift.detected",
    "slipway.security.finding",
)
"""What a team's channel is told about."""


class Alert(BaseModel):
    """One alert as Alertmanager's webhook (version 4) sends it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str = Field(description="``firing`` or ``resolved``.")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # Alertmanager's field names
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class AlertNotice(BaseModel):
    """The body of one Alertmanager webhook request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    status: str
    externalURL: str = ""
    alerts: list[Alert]


def team_labels(service: str) -> dict[str, str]:
    """``{"slipway.team": <the owner's team>}``; the platform team when the owner is unknown.

    Reads the catalog (a local git read), so an event names the team that
    owns the service now, not the one that owned it when a rule was written.
    """
    from slipway.errors import SlipwayError
    from tasks.catalog import Catalog

    try:
        entry = Catalog.load_default().find(service)
    except (SlipwayError, ValueError) as e:
        logger.warning("no team for %s, telling the platform team: %s", service, e)
        entry = None
    return {"slipway.team": team_of(entry.owner) if entry else PLATFORM_TEAM}


def alert_event(alert: Alert, *, alertmanager_url: str) -> dict[str, Any]:
    """The Prefect event of one alert, in the JSON form ``POST /api/events`` takes.

    Its id is derived from the alert's fingerprint, status and start, so
    Alertmanager's retries of the same notification make one event.
    """
    labels = alert.labels
    name = labels.get("alertname", "unknown")
    service, environment = labels.get("service", ""), labels.get("environment", "")
    team = labels.get("team") if labels.get("audience") == "team" else None
    team = team or PLATFORM_TEAM
    resolved = alert.status == "resolved"
    resource = {
        "prefect.resource.id": f"slipway.service.{service}" if service else "slipway.platform",
        "prefect.resource.name": service or "slipway",
        "slipway.team": team,
        "slipway.alert": name,
        "slipway.severity": labels.get("severity", "warning"),
    }
    if environment:
        resource["slipway.environment"] = environment
    key = f"slipway-alert:{alert.fingerprint or sorted(labels.items())}:{alert.status}:{alert.startsAt}"
    silence = f"{alertmanager_url}/#/silences/new?filter=%7Balertname%3D%22{name}%22%7D"
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        "occurred": datetime.now(UTC).isoformat(),
        "event": ALERT_RESOLVED if resolved else ALERT_FIRING,
        "resource": resource,
        "related": [],
        "payload": {
            "alert": name,
            "status": alert.status,
            "service": service,
            "environment": environment,
            "team": team,
            "severity": labels.get("severity", "warning"),
            "summary": alert.annotations.get("summary", name),
            "description": alert.annotations.get("description", ""),
            "starts_at": alert.startsAt,
            "ends_at": alert.endsAt if resolved else "",
            "link": alert.generatorURL,
            "silence": silence,
            "labels": dict(labels),
        },
    }


def emit_approval_waiting(service: str, environment: str, sha: str) -> str | None:
    """Tell the service's team that a run waits for approval; returns the form's link.

    Called by the run that pauses, just before it does: the link opens that
    run in the Prefect UI, where **Resume** shows the approval form.
    """
    from prefect.context import FlowRunContext
    from prefect.events import emit_event
    from prefect.utilities.urls import url_for

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    link = url_for(run) if run is not None else None
    emit_event(
        event=APPROVAL_WAITING,
        resource={
            "prefect.resource.id": f"slipway.service.{service}",
            "prefect.resource.name": service,
            "slipway.environment": environment,
            **team_labels(service),
        },
        payload={
            "service": service,
            "environment": environment,
            "sha": sha,
            "link": link or "(open the paused run in the Prefect UI)",
            "flow_run_id": str(run.id) if run else "",
        },
    )
    return link
