"""The insights flows against a real Prefect server: DORA from recorded releases, scorecards, events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect import flow, get_client
from prefect.events import emit_event
from prefect.input.run_input import keyset_from_base_key

from blocks import ArtifactStore, GitServer
from flows.catalog import set_group
from flows.insights import evaluate_service, nightly_insights
from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.entities import GroupEntity
from tasks.insights.dora import DoraMetrics, ProdRelease
from tasks.insights.facts import approvals_fact
from tasks.insights.health_log import (
    HEALTH_FAILED_EVENT,
    HealthEvent,
    health_key,
    load_health_events,
)
from tasks.insights.store import load_dora, load_levels, load_scorecard
from tasks.release import DeploymentRecord, record_deployment
from tasks.storage import open_store
from tests.conftest import Platform
from tests.tasks.test_dora import BILLING, NOW, PAYMENTS, PAYMENTS_30_DAYS


def catalog_service(name: str, owner: str = "group:payments") -> None:
    server = GitServer.load_default()
    Catalog(server).save(
        CatalogEntry(
            name=name,
            owner=owner,
            repository=str(server.root / f"{name}.git"),
            port=8100 + len(name),
            environments=("dev", "prod"),
        ),
        message=f"onboard {name}",
    )


def write_history(service: str, releases: list[ProdRelease], shift: timedelta) -> None:
    """The fixture's releases as the delivery flows record them, moved to end now."""
    for i, release in enumerate(releases):
        record_deployment.fn(
            DeploymentRecord(
                service=service,
                environment="prod",
                sha=f"{i:040x}",
                image=f"r/{service}@sha256:{i:064x}",
                action=release.action,
                outcome="succeeded" if release.succeeded else "failed",
                at=release.at + shift,
                committed_at=(release.committed_at + shift).isoformat()
                if release.committed_at
                else "",
            )
        )


def wait_for_events(name: str, resource: str, *, count: int = 1) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [resource]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json=body).json()["events"]
            if len(events) >= count or time.monotonic() > deadline:
                return list(events)
            time.sleep(0.3)


def test_nightly_insights_keeps_dora_as_worked_out_by_hand_with_health_failures_from_events(
    platform: Platform,
) -> None:
    """The fixture of tests/tasks/test_dora.py, recorded for real and moved to end now.

    Health failure H1 (19 days back) is already in the kept log; H2 (a day
    back) is only a Prefect event, which the flow copies into the log. With
    both, the stored 30-day metrics are the hand-worked ones: 6 of 7 changes
    deployed, lead time 12 h, CFR 4/7, recovery 2 h, rework 3/7.
    """
    now = datetime.now(UTC)
    shift = now - NOW
    catalog_service("ledger-api")
    catalog_service("ledger-billing")
    write_history("ledger-api", PAYMENTS, shift)
    write_history("ledger-billing", BILLING, shift)
    store = open_store(ArtifactStore.load_default())
    h1 = HealthEvent(
        id=str(uuid4()), at=datetime(2025, 3, 12, 8, tzinfo=UTC) + shift, environment="prod"
    )
    store.put(
        health_key("ledger-api"), json.dumps({"events": [h1.model_dump(mode="json")]}).encode()
    )
    emit_event(
        event=HEALTH_FAILED_EVENT,
        resource={
            "prefect.resource.id": "slipway.service.ledger-api",
            "slipway.environment": "prod",
        },
        occurred=datetime(2025, 3, 30, 12, tzinfo=UTC) + shift,
        payload={"detail": "5xx ratio over 5 %"},
    )
    assert wait_for_events(HEALTH_FAILED_EVENT, "slipway.service.ledger-api")

    summary = nightly_insights()

    assert summary.teams == ["payments"]
    report = load_dora(store, "component:ledger-api")
    assert report is not None
    assert report.window(30) == PAYMENTS_30_DAYS
    team = load_dora(store, "group:payments")
    assert team is not None and team.services == ("ledger-api", "ledger-billing")
    month = team.window(30)
    assert isinstance(month, DoraMetrics)
    assert (month.deployments, month.attempts, month.change_failure_rate) == (8, 9, 4 / 9)
    kept = load_health_events(store, "ledger-api")
    assert [e.detail for e in kept] == ["", "5xx ratio over 5 %"]
    assert set(load_levels(store).levels) == {"ledger-billing", "ledger-api"}


def test_a_level_that_moves_is_an_event(platform: Platform, tmp_path: Path) -> None:
    scorecard = tmp_path / "scorecard.yaml"
    scorecard.write_text(
        "levels: [bronze, silver]\n"
        "checks:\n"
        "  - {id: team, level: bronze, title: Team, fact: owner_group_members,"
        " operator: '>=', value: 1}\n"
        "  - {id: alerts, level: silver, title: Alerts, fact: alert_rules,"
        " operator: '>=', value: 1}\n"
    )
    catalog_service("scored-orders", owner="group:shop")
    first = evaluate_service("scored-orders", scorecards=str(scorecard))
    assert first.level is None
    assert [c.status for c in first.checks] == ["failed", "not-configured"]

    set_group(GroupEntity(name="shop", members=("carol",), approvers=("carol",)))
    second = evaluate_service("scored-orders", scorecards=str(scorecard))

    assert second.level == "bronze" and second.next_level == "silver"
    assert [c.id for c in second.blocking()] == ["alerts"]
    store = open_store(ArtifactStore.load_default())
    assert load_scorecard(store, "scored-orders") == second
    (event,) = wait_for_events("slipway.scorecard.level-changed", "slipway.service.scored-orders")
    assert event["payload"] == {
        "service": "scored-orders",
        "previous": None,
        "level": "bronze",
        "blocking": ["alerts"],
    }


@flow
def _released() -> None:
    """A flow that only stands for the run of a release."""


def test_prod_changes_count_as_approved_only_with_an_approval_in_their_run(
    platform: Platform,
) -> None:
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        approved = client.create_flow_run(_released)
        unanswered = client.create_flow_run(_released)
        rejected = client.create_flow_run(_released)
        key = keyset_from_base_key("paused-1")["response"]  # where pause_flow_run keeps answers
        client.create_flow_run_input(approved.id, key, json.dumps({"approve": True, "comment": ""}))
        client.create_flow_run_input(
            rejected.id, key, json.dumps({"approve": False, "comment": ""})
        )

        def prod(sha: str, run: Any, action: str = "promote") -> DeploymentRecord:
            return DeploymentRecord(
                service="s",
                environment="prod",
                sha=sha * 40,
                image="r/s@sha256:" + "0" * 64,
                action=action,  # type: ignore[arg-type]
                outcome="succeeded",
                at=now - timedelta(days=1),
                flow_run_id=str(run.id),
            )

        records = [
            prod("a", approved),
            prod("b", unanswered),
            prod("c", rejected),
            prod("d", unanswered, action="rollback"),  # rollbacks need no approval
        ]
        fact = approvals_fact(client, records, now)
    assert fact.value == 2
    assert "bbbbbbbbbbbb" in fact.detail and "cccccccccccc" in fact.detail
