"""The event a new finding raises, for whoever watches: automations, monitoring, notifications.

The nightly scan emits it for each new HIGH or CRITICAL finding, and the
advisory-impact match for each finding a newly synced advisory adds to a
stored scan. The resource is the service, labelled with the severity, so
one trigger or notification rule can route by team and by how bad it is.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect.events import emit_event

from tasks.monitoring.events import team_labels
from tasks.scanners.report import FindingRecord

__all__ = ["FINDING_EVENT", "emit_finding"]

FINDING_EVENT = "slipway.security.finding"
"""Emitted for each new finding worth telling the service's team about."""


def emit_finding(service: str, sha: str, finding: FindingRecord, **extra: Any) -> None:
    """Emit `FINDING_EVENT` for ``finding`` in ``service`` at ``sha``; ``extra`` joins the payload.

    The event id is derived from the service, commit and fingerprint, so a
    retried run, or a scan after the match, never alerts twice.
    """
    emit_event(
        event=FINDING_EVENT,
        resource={
            "prefect.resource.id": f"slipway.service.{service}",
            "prefect.resource.name": service,
            "slipway.security.severity": finding.severity.value,
            **team_labels(service),  # routes it to the team's channel
        },
        payload={
            "service": service,
            "sha": sha,
            "tool": finding.tool,
            "rule_id": finding.rule_id,
            "severity": finding.severity.value,
            "file": finding.file,
            "line": finding.line,
            "message": finding.message,
            "fix_version": finding.fix_version,
            **extra,
        },
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"slipway:{service}:{sha}:{finding.fingerprint}"),
    )
