"""The calls the webhook forwarder makes to Prefect's REST API, and nothing else.

- `PrefectApi.post_events`: push events, many in one request.
- `PrefectApi.expected_runs`: the runs Prefect's triggers will start for an
  event. prefect.yaml's ``triggers:`` live in Prefect as automations; a
  reactive event trigger that matches the event fires its ``run-deployment``
  actions, and each run gets the idempotency key `run_key` names
  (`slipway.prefect_patches.run_idempotency`). Matching follows Prefect's own
  rules (``EventTrigger.covers`` on the server), with Prefect's client models.
- `PrefectApi.found_runs`: which of those runs exist, by key.
- `PrefectApi.record_superseded` and `PrefectApi.record_failed`: what became of
  a push that did not run, as Prefect shows it: an event on the service's
  resource (its history in the event feed) and, for superseded pushes, a row
  each in the table artifact ``pushes-<service>``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import Automation, EventTrigger, Posture
from prefect.events.schemas.events import RelatedResource, Resource, ResourceSpecification
from pydantic import ValidationError

from deployments.intake import SupersededPush
from slipway.prefect_patches.run_idempotency import run_key

__all__ = [
    "FAILED_EVENT",
    "SUPERSEDED_EVENT",
    "ExpectedRun",
    "FoundRun",
    "PrefectApi",
    "push_history_key",
]

SUPERSEDED_EVENT = "slipway.push.superseded"
"""Recorded for pushes that gave way to a newer one; not ``slipway.git.push.*``,
which the push triggers would match (Prefect matches event names by prefix)."""
FAILED_EVENT = "slipway.push.failed"
"""Recorded for a push whose runs Prefect never created, after the forwarder gave up."""

_NAMESPACE = uuid.UUID("3b0f2a4e-61c9-4e1b-9a57-2f6d8c1e0b44")
_PAGE = 200


@dataclass(frozen=True)
class ExpectedRun:
    """A run a trigger will create for an event."""

    deployment: str
    """The deployment's id."""
    key: str
    """The run's idempotency key."""


@dataclass(frozen=True)
class FoundRun:
    """A run that exists in Prefect."""

    id: str
    name: str
    deployment: str


def push_history_key(service: str) -> str:
    """The artifact key of a service's superseded pushes: ``pushes-<service>``."""
    return f"pushes-{service}"


class PrefectApi:
    """Prefect's API as the forwarder uses it, over one `httpx.AsyncClient` at ``.../api``."""

    def __init__(self, client: httpx.AsyncClient, *, automations_ttl: float = 5.0) -> None:
        self._client = client
        self._ttl = automations_ttl
        self._automations: list[Automation] = []
        self._read_at = float("-inf")

    async def post_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Post ``events`` in one request; raises `httpx.HTTPError` unless Prefect took them all."""
        if events:
            response = await self._client.post("/events", json=list(events))
            response.raise_for_status()

    async def refresh_automations(self) -> None:
        """Read the automations again if the cached ones are older than the TTL."""
        if time.monotonic() - self._read_at > self._ttl:
            self._automations = await self._read_automations()
            self._read_at = time.monotonic()

    async def expected_runs(self, event: dict[str, Any]) -> list[ExpectedRun]:
        """The runs Prefect's reactive triggers start for ``event``, each with its key."""
        await self.refresh_automations()
        expected = []
        for automation in self._automations:
            if not _fires_for(automation, event):
                continue
            for index, action in enumerate(automation.actions):
                if isinstance(action, RunDeployment) and action.deployment_id is not None:
                    key = run_key(automation.id, index, event["id"])
                    expected.append(ExpectedRun(str(action.deployment_id), key))
        return expected

    async def _read_automations(self) -> list[Automation]:
        found: list[Automation] = []
        while True:
            page = {"limit": _PAGE, "offset": len(found)}
            response = await self._client.post("/automations/filter", json=page)
            response.raise_for_status()
            rows = response.json()
            for row in rows:
                try:
                    found.append(Automation.model_validate(row))
                except ValidationError:
                    continue  # a kind of automation this Prefect client cannot read starts no push run
            if len(rows) < _PAGE:
                return found

    async def found_runs(self, keys: Sequence[str]) -> dict[str, FoundRun]:
        """Of the runs with these idempotency keys, those that exist, by key."""
        found: dict[str, FoundRun] = {}
        wanted = sorted(set(keys))
        for i in range(0, len(wanted), _PAGE):
            body = {
                "flow_runs": {"idempotency_key": {"any_": wanted[i : i + _PAGE]}},
                "limit": _PAGE,
            }
            response = await self._client.post("/flow_runs/filter", json=body)
            response.raise_for_status()
            for run in response.json():
                found[run["idempotency_key"]] = FoundRun(
                    str(run["id"]), str(run["name"]), str(run["deployment_id"])
                )
        return found

    async def record_superseded(self, pushes: Sequence[SupersededPush]) -> None:
        """Show pushes that gave way to the same newer push: an artifact row and an event each group.

        Raises `httpx.HTTPError` when Prefect did not take them; the caller tries again.
        """
        if not pushes:
            return
        first, service = pushes[0], pushes[0].service
        rows = [
            {
                "received": _iso(p.received_at),
                "ref": p.ref,
                "commit": p.after,
                "pusher": p.pusher,
                "delivery": p.delivery,
                "superseded by": p.by_after,
            }
            for p in pushes
        ]
        artifact = {
            "key": push_history_key(service),
            "type": "table",
            "data": json.dumps(rows),
            "description": (
                f"{len(pushes)} push(es) of `{first.ref}` superseded by `{first.by_after[:12]}`, "
                "which was waiting with them: only the newest commit of a branch runs."
            ),
        }
        response = await self._client.post("/artifacts/", json=artifact)
        response.raise_for_status()
        await self.post_events([_superseded_event(pushes)])

    async def record_failed(
        self, service: str, ref: str, after: str, event: str, reason: str
    ) -> None:
        """Record that the push of ``event`` never became its runs, and why."""
        body = _service_event(
            FAILED_EVENT,
            uuid.uuid5(_NAMESPACE, f"failed:{event}"),
            service,
            ref,
            {"commit": after, "push_event": event, "reason": reason},
        )
        await self.post_events([body])


def _fires_for(automation: Automation, event: dict[str, Any]) -> bool:
    """Whether Prefect's triggers service fires ``automation`` for ``event`` at once.

    Only reactive event triggers that fire on each event (threshold 1, no
    window, no ``after``) can be waited for; others start no push run here.
    """
    trigger = automation.trigger
    if not automation.enabled or not isinstance(trigger, EventTrigger):
        return False
    if trigger.posture != Posture.Reactive or trigger.threshold != 1 or trigger.after:
        return False
    if trigger.within.total_seconds() != 0:
        return False
    if trigger.expect:
        # As the server does: anchored at the start only, so "a.b" also matches "a.b.c".
        pattern = "|".join(re.escape(e).replace("\\*", ".+") for e in trigger.expect)
        if not re.match(pattern, event["event"]):
            return False
    if not _spec(trigger.match).includes([Resource(root=event["resource"])]):
        return False
    related = [RelatedResource(root=r) for r in event.get("related", [])]
    wanted = trigger.match_related
    specs = wanted if isinstance(wanted, list) else [wanted]
    return all(_spec(spec).includes(related) for spec in specs)


def _spec(value: ResourceSpecification | dict[str, Any]) -> ResourceSpecification:
    return value if isinstance(value, ResourceSpecification) else ResourceSpecification(value)


def _superseded_event(pushes: Sequence[SupersededPush]) -> dict[str, Any]:
    first = pushes[0]
    event = _service_event(
        SUPERSEDED_EVENT,
        uuid.uuid5(_NAMESPACE, f"superseded:{first.seq}:{pushes[-1].seq}"),
        first.service,
        first.ref,
        {
            "superseded_by": {"commit": first.by_after, "push_event": first.by_event},
            "count": len(pushes),
            "pushes": [
                {"commit": p.after, "pusher": p.pusher, "delivery": p.delivery} for p in pushes
            ],
        },
    )
    related = {"prefect.resource.id": f"prefect.event.{first.by_event}"}
    event["related"] = [related | {"prefect.resource.role": "superseded-by"}]
    return event


def _service_event(
    name: str, event_id: uuid.UUID, service: str, ref: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": str(event_id),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": f"slipway.service.{service}",
            "prefect.resource.name": service,
            "slipway.git.ref": ref,
        },
        "related": [],
        "payload": {"service": service, "ref": ref, **payload},
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
