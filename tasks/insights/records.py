"""Reading what delivery recorded in Prefect: release records, the latest reports, approvals.

`tasks.release.history` writes one table artifact version per release
attempt under ``deployments-<service>--<environment>``. DORA needs all of a
service's records, the portal only the newest few and the latest per
environment, and the scorecards whether a prod change was approved; each
is one or a few requests here, whatever the history's length.

Every function takes an open `SyncPrefectClient`, so a caller that asks many
questions (the portal, the nightly flow) reuses one connection.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.schemas.sorting import ArtifactSort
from pydantic import BaseModel, ValidationError

from tasks.release import DeploymentRecord, history_key

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = [
    "PAGE",
    "LatestArtifact",
    "all_records",
    "approval_of",
    "latest_artifacts",
    "latest_everywhere",
    "latest_records",
    "recent_records",
]

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PAGE = 200
"""Prefect's largest page of artifacts."""
MAX_RECORDS = 50_000
"""A service's history is read up to this many records; DORA's 90 days need far fewer."""


class LatestArtifact(BaseModel):
    """The newest version of a keyed artifact."""

    key: str
    data: Any = None
    description: str | None = None
    flow_run_id: UUID | None = None
    updated: Any = None


def _key_pattern(service: str) -> str:
    # Service names are DNS labels: no SQL wildcard ('%', '_') can hide in them.
    return f"deployments-{service}--%"


def _records(rows: list[dict[str, Any]], service: str | None) -> list[DeploymentRecord]:
    """The records in artifact rows, of ``service`` if given; unreadable rows are skipped.

    A record counts only under its own key, so a table filed under another
    service's or environment's key is never taken for that one's history.
    """
    found: list[DeploymentRecord] = []
    for row in rows:
        data = row.get("data")
        try:
            table = json.loads(data) if isinstance(data, str) else data
            records = [DeploymentRecord.model_validate(item) for item in table or []]
        except (ValueError, TypeError, ValidationError):
            logger.warning("Skipping the unreadable deployment record %s", row.get("id"))
            continue
        found += [
            r
            for r in records
            if history_key(r.service, r.environment) == row.get("key")
            and (service is None or r.service == service)
        ]
    return found


def _filter(client: SyncPrefectClient, body: dict[str, Any], path: str) -> list[dict[str, Any]]:
    response = client.request("POST", path, json=body)  # type: ignore[arg-type]
    rows = response.json()
    return rows if isinstance(rows, list) else []


def recent_records(
    client: SyncPrefectClient, service: str, *, limit: int = 50, offset: int = 0
) -> list[DeploymentRecord]:
    """The newest ``limit`` records of ``service`` across its environments, newest first."""
    body = {
        "artifacts": {"key": {"like_": _key_pattern(service)}},
        "sort": ArtifactSort.CREATED_DESC.value,
        "limit": min(limit, PAGE),
        "offset": offset,
    }
    records = _records(_filter(client, body, "/artifacts/filter"), service)
    return sorted(records, key=lambda r: r.at, reverse=True)


def all_records(client: SyncPrefectClient, service: str) -> list[DeploymentRecord]:
    """Every record of ``service`` in every environment, oldest first."""
    found: list[DeploymentRecord] = []
    for offset in range(0, MAX_RECORDS, PAGE):
        body = {
            "artifacts": {"key": {"like_": _key_pattern(service)}},
            "sort": ArtifactSort.CREATED_DESC.value,
            "limit": PAGE,
            "offset": offset,
        }
        rows = _filter(client, body, "/artifacts/filter")
        found += _records(rows, service)
        if len(rows) < PAGE:
            break
    else:
        logger.warning("%s has over %d release records; only those were read", service, MAX_RECORDS)
    return sorted(found, key=lambda r: r.at)


def latest_records(client: SyncPrefectClient, service: str) -> dict[str, DeploymentRecord]:
    """The newest record of each environment of ``service``, by environment."""
    body = {"artifacts": {"key": {"like_": _key_pattern(service)}}, "limit": PAGE, "offset": 0}
    records = _records(_filter(client, body, "/artifacts/latest/filter"), service)
    return {r.environment: r for r in sorted(records, key=lambda r: r.at)}


def latest_everywhere(client: SyncPrefectClient) -> dict[tuple[str, str], DeploymentRecord]:
    """The newest record of every environment of every service, by (service, environment)."""
    found: dict[tuple[str, str], DeploymentRecord] = {}
    for offset in range(0, MAX_RECORDS, PAGE):
        body = {"artifacts": {"key": {"like_": "deployments-%"}}, "limit": PAGE, "offset": offset}
        rows = _filter(client, body, "/artifacts/latest/filter")
        for record in _records(rows, None):
            found[(record.service, record.environment)] = record
        if len(rows) < PAGE:
            break
    return found


def latest_artifacts(client: SyncPrefectClient, keys: list[str]) -> dict[str, LatestArtifact]:
    """The newest version of each of ``keys`` that exists, by key."""
    body = {"artifacts": {"key": {"any_": keys}}, "limit": PAGE, "offset": 0}
    rows = _filter(client, body, "/artifacts/latest/filter")
    found = {}
    for row in rows:
        try:
            data = row.get("data")
            artifact = LatestArtifact.model_validate(
                {**row, "data": json.loads(data) if isinstance(data, str) else data}
            )
        except (ValueError, ValidationError):
            logger.warning("Skipping the unreadable artifact %s", row.get("key"))
            continue
        found[artifact.key] = artifact
    return found


def approval_of(client: SyncPrefectClient, flow_run_id: str) -> dict[str, Any] | None:
    """The answer given to the run's approval form (``pause_flow_run``), or None when none was.

    Prefect keeps a paused run's input under ``paused-<n>-response``; the
    newest response is the one the run went on with.
    """
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        return None
    inputs = client.filter_flow_run_input(run_id, "paused-", limit=20, exclude_keys=set())
    responses = sorted(
        (i for i in inputs if i.key.endswith("-response")), key=lambda i: i.created or _EPOCH
    )
    if not responses:
        return None
    try:
        answer = json.loads(responses[-1].value)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
