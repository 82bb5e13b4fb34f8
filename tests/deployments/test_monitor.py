"""The monitor counts the platform from Prefect's real event stream and serves it to Prometheus."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prefect import flow
from prefect.events import emit_event
from pydantic import SecretStr

from deployments.monitor import build_app
from deployments.monitor_jobs import follow_events
from deployments.monitor_metrics import PlatformMetrics
from testkit.platform import free_port, wait_for


@flow(name="promote")
def promote_like(service: str, from_env: str, to_env: str) -> str:
    """A run of a release flow's name: the monitor times it as a release."""
    return f"{service} {from_env}->{to_env}"


@pytest.fixture(scope="module")
def monitor(prefect_server: str) -> Iterator[str]:
    import uvicorn

    metrics, changes = PlatformMetrics(), threading.Event()

    async def events() -> None:
        await follow_events(metrics, api_url=prefect_server, on_change=changes.set)

    port = free_port()
    app = build_app(
        api_url=prefect_server,
        token=SecretStr("t"),
        alertmanager_url="http://127.0.0.1:9093",
        metrics=metrics,
        background=[events],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: "slipway_monitor_event_stream_up 1.0" in _text(url), timeout=30, what="stream")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _text(url: str) -> str:
    try:
        return httpx.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def test_flow_runs_and_release_durations_are_counted_by_state(monitor: str) -> None:
    promote_like("svc-m", "dev", "staging")
    completed = 'slipway_flow_run_states_total{deployment="",flow="promote",state="Completed"}'
    timed = (
        'slipway_release_duration_seconds_count{environment="staging",flow="promote",'
        'service="svc-m",state="Completed"} 1.0'
    )
    wait_for(
        lambda: completed in _text(monitor) and timed in _text(monitor),
        timeout=30,
        what="the run counted and timed",
    )
    assert 'slipway_flow_runs{deployment="",flow="promote",state="Running"} 0.0' in _text(monitor)


def test_deployment_drift_and_finding_events_set_their_alert_timestamps(monitor: str) -> None:
    before = datetime.now(UTC).timestamp()
    emit_event(
        event="slipway.deployment.failed",
        resource={"prefect.resource.id": "slipway.service.svc-d"},
        payload={
            "service": "svc-d",
            "environment": "dev",
            "action": "promote",
            "outcome": "failed",
        },
    )
    emit_event(
        event="slipway.security.finding",
        resource={"prefect.resource.id": "slipway.service.svc-d"},
        payload={"service": "svc-d", "severity": "critical"},
    )
    name = 'slipway_deployment_last_timestamp_seconds{environment="dev",outcome="failed",service="svc-d"}'
    finding = 'slipway_security_finding_last_timestamp_seconds{service="svc-d",severity="critical"}'

    def both() -> str | None:
        text = _text(monitor)
        return text if name in text and finding in text else None

    text = wait_for(both, timeout=30, what="the event gauges")
    line = next(x for x in text.splitlines() if x.startswith(name))
    assert float(line.split()[-1]) >= before - 5
    assert (
        'slipway_deployments_total{action="promote",environment="dev",outcome="failed",service="svc-d"} 1.0'
        in text
    )


def test_metrics_are_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = PlatformMetrics()
    metrics.set_scan_findings({"svc": {"critical": 1, "high": 2}})
    families = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    assert {"slipway_scan_findings", "slipway_flow_run_states", "slipway_deployments"} <= families


def test_follow_events_survives_an_unreachable_prefect() -> None:
    metrics = PlatformMetrics()

    async def briefly() -> None:
        task = asyncio.create_task(
            follow_events(metrics, api_url="http://127.0.0.1:9/api", on_change=lambda: None)
        )
        await asyncio.sleep(1.0)
        assert not task.done(), "the follower gave up instead of retrying"
        task.cancel()

    asyncio.run(briefly())
