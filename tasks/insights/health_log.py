"""Production health failures, kept as long as DORA looks back.

Monitoring reports a failed health check or a firing alert of a running
environment as a ``slipway.health.failed`` Prefect event on the service's
resource (``slipway.service.<name>``, label ``slipway.environment``). Prefect
keeps events for days, DORA looks back 90, so the nightly insights flow
copies them into the artifact store (``_slipway/health/<service>.json``),
deduplicated by event id; `load_health_events` reads them back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from slipway.errors import ObjectNotFound
from tasks.storage import ObjectStore

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = [
    "HEALTH_FAILED_EVENT",
    "KEEP",
    "HealthEvent",
    "health_key",
    "ingest_health_events",
    "load_health_events",
]

logger = logging.getLogger(__name__)

HEALTH_FAILED_EVENT = "slipway.health.failed"
"""The event monitoring emits when a running environment fails a check; DORA counts it."""
KEEP = timedelta(days=120)
"""How far back the log keeps events: more than DORA's longest window."""
_PAGES = 200


class HealthEvent(BaseModel):
    """One failed health check of one environment."""

    id: str
    at: datetime
    environment: str
    detail: str = ""


class _Log(BaseModel):
    events: list[HealthEvent] = []


def health_key(service: str) -> str:
    """Where a service's health log is kept; ``_`` keeps it apart from services' own keys."""
    return f"_slipway/health/{service}.json"


def load_health_events(store: ObjectStore, service: str) -> list[HealthEvent]:
    """The kept health failures of ``service``, oldest first; none when there is no log."""
    try:
        return _Log.model_validate_json(store.get(health_key(service))).events
    except ObjectNotFound:
        return []
    except ValidationError as e:
        logger.warning("Ignoring the unreadable health log of %s: %s", service, e)
        return []


def ingest_health_events(
    client: SyncPrefectClient, store: ObjectStore, *, since: datetime, now: datetime
) -> int:
    """Copy the health-failure events since ``since`` from Prefect into the log; returns how many are new."""
    by_service: dict[str, list[HealthEvent]] = defaultdict(list)
    for event in _events(client, since=since, until=now):
        resource = event.get("resource") or {}
        service = str(resource.get("prefect.resource.id", "")).removeprefix("slipway.service.")
        try:
            by_service[service].append(
                HealthEvent(
                    id=str(event["id"]),
                    at=event["occurred"],
                    environment=str(resource.get("slipway.environment", "")),
                    detail=str((event.get("payload") or {}).get("detail", ""))[:500],
                )
            )
        except (KeyError, ValidationError) as e:
            logger.warning("Skipping an unreadable %s event: %s", HEALTH_FAILED_EVENT, e)
    added = 0
    for service, events in by_service.items():
        kept = load_health_events(store, service)
        known = {e.id for e in kept}
        new = [e for e in events if e.id not in known]
        merged = sorted((*kept, *new), key=lambda e: e.at)
        merged = [e for e in merged if e.at >= now - KEEP]
        store.put(
            health_key(service),
            _Log(events=merged).model_dump_json().encode(),
            content_type="application/json",
        )
        added += len(new)
    return added


def _events(client: SyncPrefectClient, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "occurred": {"since": since.isoformat(), "until": until.isoformat()},
            "event": {"name": [HEALTH_FAILED_EVENT]},
            "resource": {"id_prefix": ["slipway.service."]},
            "order": "ASC",
        },
        "limit": 50,
    }
    page = client.request("POST", "/events/filter", json=body).json()
    found: list[dict[str, Any]] = list(page.get("events") or [])
    for _ in range(_PAGES):
        link = page.get("next_page")
        if not link:
            break
        token = parse_qs(urlsplit(str(link)).query).get("page-token", [""])[0]
        page = client.request("GET", "/events/filter/next", params={"page-token": token}).json()
        found += page.get("events") or []
    return found
