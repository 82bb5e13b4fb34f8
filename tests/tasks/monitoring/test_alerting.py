"""A service goes down: real Prometheus, Alertmanager and blackbox tell its team by webhook and email.

The whole path runs for real on loopback: the blackbox exporter probes the
container's health URL, Prometheus' rule fires, Alertmanager posts to the
monitor, which turns the alert into a Prefect event; Prefect's automation
sends it through the team's Custom Webhook block (to a local HTTP receiver)
and its email block (to aiosmtpd). Then the service comes back and both
hear that it resolved.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import DEFAULT_DOCUMENT
from tasks.catalog import Catalog, CatalogEntry
from tasks.monitoring.automations import ensure_notification_automations
from tasks.monitoring.prometheus import firing_alerts
from tasks.monitoring.sync import sync_monitoring
from tasks.monitoring.view import PrometheusMonitoring
from testkit.monitoring import (
    FAST,
    SmtpInbox,
    Stack,
    WebhookReceiver,
    monitoring_stack,
    run_service_container,
)
from testkit.platform import Platform, free_port, wait_for
from tests.flows.delivery_fixtures import BASE_IMAGE, docker_or_skip

pytestmark = pytest.mark.docker

UI = "http://127.0.0.1:4200"


@pytest.fixture(scope="module")
def stack(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with monitoring_stack(tmp_path_factory.mktemp("stack"), api_url=prefect_server) as running:
        yield running


@pytest.fixture
def people() -> Iterator[tuple[WebhookReceiver, SmtpInbox]]:
    receiver, inbox = WebhookReceiver(), SmtpInbox()
    yield receiver, inbox
    receiver.close()
    inbox.close()


def give_team_channels(team: str, receiver: WebhookReceiver, inbox: SmtpInbox) -> None:
    """The team's webhook and email channel blocks, as a team would create them in the UI."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect_email import EmailServerCredentials

    from blocks.notifications import EmailNotification

    CustomWebhookNotificationBlock(
        name=team,
        url=receiver.url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    ).save(f"team-{team}", overwrite=True)
    EmailNotification(
        credentials=EmailServerCredentials(
            smtp_server="127.0.0.1", smtp_port=inbox.port, smtp_type="INSECURE"
        ),
        email_from="slipway@example.invalid",
        email_to=[f"{team}@example.invalid"],
    ).save(f"team-{team}", overwrite=True)
    ensure_notification_automations(UI)


def catalogue(service: str, team: str, port: int) -> None:
    Catalog.load_default().save(
        CatalogEntry(
            name=service, owner=f"group:{team}", repository=f"/srv/{service}.git", port=port
        ),
        message=f"Add {service}",
    )


def test_a_stopped_service_is_notified_by_webhook_and_email_and_resolves_when_back(
    stack: Stack, platform: Platform, people: tuple[WebhookReceiver, SmtpInbox]
) -> None:
    client = docker_or_skip()
    receiver, inbox = people
    team, service, port = f"t{uuid.uuid4().hex[:6]}", f"mon-{uuid.uuid4().hex[:6]}", free_port()
    FAST.save(DEFAULT_DOCUMENT, overwrite=True)
    catalogue(service, team, port)
    give_team_channels(team, receiver, inbox)
    container = run_service_container(client, BASE_IMAGE, service, "dev", port)
    try:
        [target] = sync_monitoring(stack.layout)
        assert target.labels() == {
            "service": service,
            "environment": "dev",
            "sha": "0" * 12,
            "team": team,
        }
        up = f'probe_success{{service="{service}"}} == 1'
        wait_for(lambda: stack.query(up), timeout=30, what="the first successful probe")

        container.stop(timeout=2)

        def said(word: str) -> tuple[dict[str, str], object] | None:
            hook = [b for _, b in receiver.received if b.get("subject", "").startswith(word)]
            mail = [m for _, m in inbox.messages if str(m["Subject"]).startswith(word)]
            return (hook[-1], mail[-1]) if hook and mail else None

        hook, mail = wait_for(lambda: said("[FIRING]"), timeout=60, what="the down notification")
        assert hook["subject"] == f"[FIRING] {service} in dev is down"
        for text in (hook["body"], mail.get_payload()):  # type: ignore[attr-defined]
            assert f"Service: {service}" in text and "Environment: dev" in text
            assert f"Link: {stack.layout.prometheus_url}/graph?" in text
        assert mail["To"] == f"{team}@example.invalid"
        [firing] = firing_alerts(
            stack.layout.alertmanager_url,
            service,
            environment="dev",
            auth=stack.layout.basic_auth(),
        )
        assert firing.name == "SlipwayServiceDown" and firing.severity == "critical"
        assert (
            firing_alerts(
                stack.layout.alertmanager_url,
                service,
                environment="prod",
                auth=stack.layout.basic_auth(),
            )
            == []
        )
        portal = PrometheusMonitoring(stack.layout)  # what the portal and scorecards ask
        assert [a.name for a in portal.firing(service) or []] == ["SlipwayServiceDown"]
        assert portal.rule_count(service) == 4  # its two, and the platform's two for all

        container.start()
        hook, _ = wait_for(lambda: said("[RESOLVED]"), timeout=60, what="the resolved notification")
        assert service in hook["subject"]
    finally:
        container.remove(force=True)
        Catalog.load_default().remove(service, message=f"Remove {service}")
        sync_monitoring(stack.layout)


def test_the_receiver_refuses_alerts_without_its_token(stack: Stack) -> None:
    import httpx

    body = {"version": "4", "status": "firing", "alerts": []}
    url = f"{stack.layout.monitor_url}/alerts"
    assert httpx.post(url, json=body, timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.post(url, json=body, headers=wrong, timeout=5).status_code == 401
    right = {"Authorization": f"Bearer {stack.layout.receiver_token().get_secret_value()}"}
    assert httpx.post(url, json=body, headers=right, timeout=5).status_code == 200
    assert httpx.post(url, content=b"{", headers=right, timeout=5).status_code == 400


def test_alertmanager_config_and_rules_pass_their_own_checks(stack: Stack, tmp_path: Path) -> None:
    from slipway.process import run

    run(["promtool", "check", "config", str(stack.layout.prometheus_config)])
    run(["amtool", "check-config", str(stack.layout.alertmanager_config)])
