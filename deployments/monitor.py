"""The monitor: the platform's metrics and Alertmanager's receiver, in one small ASGI process.

- ``GET /metrics``: flow runs by deployment and state, release durations,
  deployments, drift and findings (`deployments.monitor_metrics`), counted
  from Prefect's event stream, which this process follows.
- ``POST /alerts``: Alertmanager's webhook. Each alert becomes a
  ``slipway.alert.firing`` or ``.resolved`` Prefect event on the service's
  resource, labelled with its team (`tasks.monitoring.events`); the team's
  automation sends the notification. Alertmanager must present the bearer
  token from ``<home>/monitoring/receiver.token``; the answer is 2xx only once
  Prefect accepted the events, so Alertmanager retries until it did.
- In the background: scrape targets and rules follow deployments and the
  catalog (`tasks.monitoring.sync`), the notification automations follow the
  team channel blocks, and the open findings gauge follows the scans.

One process, not two, keeps `slipway up`'s start-up cost down.
Run as ``python -m deployments.monitor --port 4500``; `slipway up` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.monitor_metrics import CONTENT_TYPE, FINAL_STATES, RELEASE_FLOWS, PlatformMetrics
from tasks.monitoring.events import AlertNotice, alert_event

__all__ = ["MAX_BODY_BYTES", "build_app", "follow_events", "main"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Alertmanager's notifications are small; anything larger is refused."""
_TARGET_EVENTS = ("slipway.deployment.", "slipway.environment.", "prefect.flow-run.Completed")


def build_app(
    *,
    api_url: str,
    token: SecretStr,
    alertmanager_url: str,
    metrics: PlatformMetrics,
    background: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
) -> Starlette:
    """The monitor as an ASGI app.

    Args:
        api_url: Prefect's API, e.g. ``http://127.0.0.1:4200/api``.
        token: The bearer token Alertmanager presents.
        alertmanager_url: Where people reach Alertmanager; silence links point there.
        metrics: The metrics ``/metrics`` shows.
        background: Coroutines run for the app's lifetime (event following, syncs).
    """
    client = httpx.AsyncClient(base_url=api_url, timeout=10.0)
    expected = f"Bearer {token.get_secret_value()}".encode()

    async def alerts(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            logger.warning("alert notification without the receiver's token refused")
            return JSONResponse({"status": "refused", "reason": "bad token"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"status": "refused", "reason": "too large"}, status_code=413)
        try:
            notice = AlertNotice.model_validate_json(body)
        except ValidationError as e:
            return JSONResponse({"status": "refused", "reason": str(e)[:500]}, status_code=400)
        events = [alert_event(a, alertmanager_url=alertmanager_url) for a in notice.alerts]
        try:
            response = await client.post("/events", json=events)
            response.raise_for_status()
        except httpx.HTTPError as e:
            logger.error("Prefect did not accept %d alert events: %s", len(events), e)
            return JSONResponse(
                {"status": "unavailable", "reason": "Prefect is not reachable; retry"},
                status_code=503,
            )
        for alert in notice.alerts:
            metrics.alerts.labels(alert.status).inc()
            logger.info(
                "alert %s %s for %s/%s",
                alert.labels.get("alertname"),
                alert.status,
                alert.labels.get("service", "-"),
                alert.labels.get("environment", "-"),
            )
        return JSONResponse({"status": "accepted", "events": [e["id"] for e in events]})

    async def render(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "reason": "monitor is up"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(job()) for job in background or []]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()

    return Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/metrics", render, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def follow_events(
    metrics: PlatformMetrics,
    *,
    api_url: str,
    on_change: Callable[[], None],
    forward: Callable[[Any], None] | None = None,
) -> None:
    """Count Prefect's flow-run and Slipway events into ``metrics``, reconnecting forever.

    ``on_change`` is called (it must not block) when an event may have changed
    what runs, so the scrape targets follow; ``forward`` gets every event (OTLP).
    """
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    wanted = EventFilter(event=EventNameFilter(prefix=["prefect.flow-run.", "slipway."]))
    async with httpx.AsyncClient(base_url=api_url, timeout=10.0) as client:
        while True:
            try:
                async with get_events_subscriber(filter=wanted) as events:
                    metrics.events_connected.set(1)
                    async for event in events:
                        await _count(metrics, client, event)
                        if event.event.startswith(_TARGET_EVENTS):
                            on_change()
                        if forward is not None:
                            forward(event)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the stream must outlive Prefect restarts
                metrics.events_connected.set(0)
                logger.warning("lost Prefect's event stream (%s); reconnecting", e)
                await asyncio.sleep(2)


async def _count(metrics: PlatformMetrics, client: httpx.AsyncClient, event: Any) -> None:
    related = [dict(r) for r in event.related]
    resource = dict(event.resource)
    metrics.observe(event.event, resource, related, dict(event.payload), event.occurred.timestamp())
    state = event.event.removeprefix("prefect.flow-run.")
    flow = next(
        (
            r.get("prefect.resource.name", "")
            for r in related
            if r.get("prefect.resource.role") == "flow"
        ),
        "",
    )
    if state in FINAL_STATES and flow in RELEASE_FLOWS:
        run_id = resource.get("prefect.resource.id", "").removeprefix("prefect.flow-run.")
        try:
            run = (await client.get(f"/flow_runs/{run_id}")).raise_for_status().json()
        except httpx.HTTPError as e:
            logger.warning("could not read release run %s: %s", run_id, e)
            return
        seconds = float(run.get("total_run_time") or 0.0)
        metrics.observe_release(flow, run.get("parameters") or {}, state, seconds)


async def every(
    seconds: float, job: Callable[[], None], *, wake: asyncio.Event | None = None
) -> None:
    """Run the blocking ``job`` in a thread every ``seconds``, or sooner when ``wake`` is set."""
    while True:
        began = time.monotonic()
        try:
            await asyncio.to_thread(job)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the next round tries again
            logger.warning("%s failed: %s", getattr(job, "__name__", "job"), e)
        left = max(0.0, seconds - (time.monotonic() - began))
        if wake is None:
            await asyncio.sleep(left)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=left)
        wake.clear()


def main(argv: list[str] | None = None) -> None:
    """Serve the monitor on loopback for this home; `deployments.monitor_jobs` runs its jobs."""
    parser = argparse.ArgumentParser(prog="python -m deployments.monitor")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import os

    import uvicorn

    from deployments.monitor_jobs import background_jobs
    from slipway import heap
    from slipway.home import HOST
    from tasks.monitoring.layout import MonitoringLayout

    layout = MonitoringLayout.from_env()
    metrics = PlatformMetrics()
    api_url = os.environ["PREFECT_API_URL"]
    app = build_app(
        api_url=api_url,
        token=layout.receiver_token(),
        alertmanager_url=layout.alertmanager_url,
        metrics=metrics,
        background=background_jobs(layout, metrics, api_url=api_url),
    )
    logger.info("monitor on http://%s:%d (/metrics, /alerts)", HOST, args.port)
    heap.settle()
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
