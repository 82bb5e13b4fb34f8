"""Teams hear about deployments and approvals through their channel block, via Prefect automations.

Real Prefect server (its automations send the notifications), a real HTTP
receiver on loopback behind Prefect's Custom Webhook block. Slack and Teams
blocks cannot be pointed at loopback (their URLs must be Slack's and
Microsoft's), so for them the test checks the automation that would send.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prefect import get_client
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    SlackWebhook,
)

from tasks.catalog import Catalog, CatalogEntry
from tasks.monitoring.automations import AUTOMATION_PREFIX, ensure_notification_automations
from tasks.monitoring.events import emit_approval_waiting
from tasks.release import DeploymentRecord, record_deployment
from testkit.monitoring import WebhookReceiver
from testkit.platform import Platform, wait_for

UI = "http://ui.example.invalid:4200"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


def mine(team: str) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        return {
            a.name: a
            for a in client.read_automations()
            if a.name.startswith(f"{AUTOMATION_PREFIX}{team} ")
        }


def test_automations_follow_the_team_channel_blocks(platform: Platform) -> None:
    team = f"t{uuid.uuid4().hex[:6]}"
    SlackWebhook(url="https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXX").save(
        f"team-{team}", overwrite=True
    )
    MicrosoftTeamsWebhook(
        url="https://prod-00.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/"
        "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=xyz"
    ).save(f"team-{team}", overwrite=True)
    changes = ensure_notification_automations(UI)
    assert f"created {AUTOMATION_PREFIX}{team} via slack-webhook" in changes
    assert f"created {AUTOMATION_PREFIX}{team} via ms-teams-webhook" in changes
    assert not [c for c in ensure_notification_automations(UI) if team in c]  # idempotent

    slack = mine(team)[f"{AUTOMATION_PREFIX}{team} via slack-webhook"]
    assert slack.trigger.match.model_dump() == {"slipway.team": team}  # type: ignore[attr-defined]
    assert "slipway.alert.firing" in slack.trigger.expect  # type: ignore[attr-defined]
    [action] = slack.actions  # type: ignore[attr-defined]
    assert action.type == "send-notification" and f"{UI}/runs/flow-run/" in action.body

    SlackWebhook.delete(f"team-{team}")
    assert (
        f"deleted {AUTOMATION_PREFIX}{team} via slack-webhook"
        in ensure_notification_automations(UI)
    )
    assert list(mine(team)) == [f"{AUTOMATION_PREFIX}{team} via ms-teams-webhook"]
    MicrosoftTeamsWebhook.delete(f"team-{team}")
    ensure_notification_automations(UI)


def test_deployments_and_waiting_approvals_reach_the_owning_team(
    platform: Platform, receiver: WebhookReceiver
) -> None:
    team, service = f"t{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    Catalog.load_default().save(
        CatalogEntry(name=service, owner=f"group:{team}", repository="/srv/x.git", port=8111),
        message=f"Add {service}",
    )
    CustomWebhookNotificationBlock(
        name=team, url=receiver.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(f"team-{team}", overwrite=True)
    ensure_notification_automations(UI)
    try:
        record_deployment(
            DeploymentRecord(
                service=service,
                environment="staging",
                sha="b" * 40,
                image=f"127.0.0.1:5001/{service}@sha256:{'c' * 64}",
                action="build-test-deploy",
                outcome="failed",
                at=datetime.now(UTC),
                triggered_by="dev@example.invalid",
                flow_run_id="1234",
                detail="did not become healthy",
            )
        )
        emit_approval_waiting(service, "prod", "d" * 40)

        def subjects() -> set[str]:
            return {body.get("subject", "") for _, body in receiver.received}

        wanted = {
            f"Deployment of {service} to staging failed",
            f"Approval waiting: {service} to prod",
        }
        wait_for(lambda: wanted <= subjects(), timeout=30, what=f"{wanted}, got {subjects()}")
        failed = next(b for _, b in receiver.received if "failed" in b["subject"])["body"]
        assert "Environment: staging" in failed and "did not become healthy" in failed
        assert f"Link: {UI}/runs/flow-run/1234" in failed
    finally:
        CustomWebhookNotificationBlock.delete(f"team-{team}")
        ensure_notification_automations(UI)
