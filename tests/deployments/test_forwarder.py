"""The forwarder's steps against a real Prefect server and a real queue, with the clock in hand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx

from deployments.bridge_metrics import BridgeMetrics
from deployments.forwarder import Forwarder, ForwarderSettings
from deployments.intake import Accepted, IntakeQueue, QueueStats
from deployments.prefect_api import FAILED_EVENT, SUPERSEDED_EVENT, PrefectApi


def _accepted(service: str, event: str, pushed_at: float) -> Accepted:
    after = uuid.uuid4().hex + "0" * 8
    return Accepted(
        key=uuid.uuid4().hex,
        delivery=str(uuid.uuid4()),
        service=service,
        ref="refs/heads/main",
        after=after,
        pusher="ada",
        received_at=pushed_at,
        pushed_at=pushed_at,
        event={
            "id": str(uuid.uuid4()),
            "occurred": "2026-01-01T00:00:00+00:00",
            "event": event,
            "resource": {"prefect.resource.id": f"slipway.service.{service}"},
            "payload": {"after": after},
        },
    )


async def _steps(
    api: str, db: Path, pushes: list[Accepted], clock: list[float], settings: ForwarderSettings
) -> QueueStats:
    queue = await IntakeQueue.open(f"sqlite+aiosqlite:///{db}")
    try:
        for push in pushes:
            await queue.accept(push)
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            forwarder = Forwarder(queue, PrefectApi(client), BridgeMetrics(), settings=settings)
            for now in clock:
                await forwarder.step(now)
        return await queue.stats(clock[-1])
    finally:
        await queue.close()


def _events(api: str, name: str, service: str) -> list[dict[str, object]]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [f"slipway.service.{service}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        }
    }
    return list(httpx.post(f"{api}/events/filter", json=body, timeout=30).json()["events"])


def _wait_events(api: str, name: str, service: str) -> list[dict[str, object]]:
    for _ in range(100):  # Prefect stores events a moment after it took them
        if found := _events(api, name, service):
            return found
        time.sleep(0.1)
    return []


def _trigger_for(api: str, service: str, name: str) -> None:
    """An automation whose trigger matches ``name`` of ``service`` and starts a run (never made)."""
    trigger = {
        "type": "event",
        "posture": "Reactive",
        "expect": [name],
        "match": {"prefect.resource.id": f"slipway.service.{service}"},
        "threshold": 1,
        "within": 0,
    }
    action = {
        "type": "run-deployment",
        "source": "selected",
        "deployment_id": str(uuid.uuid4()),
        "parameters": {},
    }
    automation = {"name": service, "trigger": trigger, "actions": [action]}
    httpx.post(f"{api}/automations/", json=automation, timeout=30).raise_for_status()


def test_waiting_pushes_collapse_and_each_superseded_one_is_recorded(prefect_server, tmp_path):
    service = f"fw-{uuid.uuid4().hex[:8]}"
    pushes = [_accepted(service, "slipway.test.forward", 100.0 + i) for i in range(4)]
    stats = asyncio.run(
        _steps(prefect_server, tmp_path / "q.db", pushes, [200.0, 201.0], ForwarderSettings())
    )
    # No trigger expects the event: posted once, delivered, and the other three recorded.
    assert (stats.queued, stats.unrecorded, stats.failed) == (0, 0, 0)
    body = {"artifacts": {"key": {"any_": [f"pushes-{service}"]}}, "limit": 10}
    [artifact] = httpx.post(f"{prefect_server}/artifacts/filter", json=body, timeout=30).json()
    rows = json.loads(artifact["data"])
    assert [r["commit"] for r in rows] == [p.after for p in pushes[:3]]
    assert {r["superseded by"] for r in rows} == {pushes[-1].after}
    [event] = _wait_events(prefect_server, SUPERSEDED_EVENT, service)
    assert event["payload"]["count"] == 3  # type: ignore[index]


def test_a_push_whose_runs_never_come_is_given_up_recorded_and_frees_its_branch(
    prefect_server, tmp_path
):
    service = f"gu-{uuid.uuid4().hex[:8]}"
    name = f"slipway.test.{service}"
    _trigger_for(prefect_server, service, name)  # its deployment does not exist: no run comes
    first, later = _accepted(service, name, 1.0), _accepted(service, name, 2.0)
    settings = ForwarderSettings(repost_after=5.0, give_up_after=60.0)
    clock = [100.0, 110.0, 161.0, 162.0]  # post; resend; give up; the next push goes
    stats = asyncio.run(_steps(prefect_server, tmp_path / "q.db", [first], clock[:3], settings))
    assert (stats.queued, stats.failed) == (0, 1)
    [failed] = _wait_events(prefect_server, FAILED_EVENT, service)
    assert failed["payload"]["commit"] == first.after  # type: ignore[index]
    assert "created no run" in failed["payload"]["reason"]  # type: ignore[index]
    stats = asyncio.run(_steps(prefect_server, tmp_path / "q.db", [later], clock[3:], settings))
    assert stats.in_flight == 1  # the branch took its next push


def test_a_push_is_posted_before_the_triggers_it_starts_are_read(prefect_server, tmp_path):
    """Reading the automations (when their cache is stale) does not delay the event itself."""
    service = f"po-{uuid.uuid4().hex[:8]}"
    requests: list[str] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request.url.path.removeprefix("/api"))

    async def step() -> None:
        queue = await IntakeQueue.open(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
        try:
            await queue.accept(_accepted(service, "slipway.test.forward", 100.0))
            hooks = {"request": [record]}
            async with httpx.AsyncClient(
                base_url=prefect_server, timeout=30, event_hooks=hooks
            ) as client:
                forwarder = Forwarder(queue, PrefectApi(client), BridgeMetrics())
                await forwarder.step(200.0)
        finally:
            await queue.close()

    asyncio.run(step())
    posted = [p for p in requests if p in ("/events", "/automations/filter")]
    assert posted == ["/events", "/automations/filter"]


def test_a_push_step_leaves_the_server_to_start_its_runs(prefect_server, tmp_path):
    """Idle steps read the triggers; the push's step only posts it; a second later it confirms."""
    service = f"qs-{uuid.uuid4().hex[:8]}"
    name = f"slipway.test.{service}"
    _trigger_for(prefect_server, service, name)
    steps: list[list[str]] = []

    async def record(request: httpx.Request) -> None:
        steps[-1].append(request.url.path.removeprefix("/api"))

    async def run() -> None:
        queue = await IntakeQueue.open(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
        hooks = {"request": [record]}
        try:
            async with httpx.AsyncClient(
                base_url=prefect_server, timeout=30, event_hooks=hooks
            ) as client:
                forwarder = Forwarder(queue, PrefectApi(client), BridgeMetrics())
                clock = (
                    (100.0, False),
                    (100.25, False),
                    (100.5, True),
                    (101.25, False),
                    (101.5, False),
                )
                for now, push in clock:
                    if push:
                        await queue.accept(_accepted(service, name, now))
                        forwarder.wake()
                    steps.append([])
                    await forwarder.step(now)
        finally:
            await queue.close()

    asyncio.run(run())
    idle, still_idle, posting, starting, confirming = steps
    assert idle == ["/automations/filter"]
    assert still_idle == []  # the read is fresh for its TTL
    assert posting == ["/events"]  # no read of the triggers, no look for runs
    assert starting == []  # its run is starting: no look yet
    assert confirming == ["/flow_runs/filter"]
