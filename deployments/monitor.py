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
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.monitor_metrics import CONTENT_TYPE, PlatformMetrics
from slipway.api_auth import http_auth
from tasks.monitoring.events import AlertNotice, alert_event

__all__ = ["MAX_BODY_BYTES", "build_app", "main"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Alertmanager's notifications are small; anything larger is refused."""


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
    client = httpx.AsyncClient(base_url=api_url, timeout=10.0, auth=http_auth())
    receiver = _AlertReceiver(client, token, alertmanager_url, metrics)

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
            Route("/alerts", receiver.receive, methods=["POST"]),
            Route("/metrics", render, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


class _AlertReceiver:
    """``POST /alerts``: Alertmanager's notifications, made Prefect events."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: SecretStr,
        alertmanager_url: str,
        metrics: PlatformMetrics,
    ) -> None:
        self._client = client
        self._expected = f"Bearer {token.get_secret_value()}".encode()
        self._alertmanager_url = alertmanager_url
        self._metrics = metrics

    async def receive(self, request: Request) -> JSONResponse:
        """Check the token and the body, then post one Prefect event per alert."""
        notice = await self._notice(request)
        if isinstance(notice, JSONResponse):
            return notice
        events = [alert_event(a, alertmanager_url=self._alertmanager_url) for a in notice.alerts]
        try:
            response = await self._client.post("/events", json=events)
            response.raise_for_status()
        except httpx.HTTPError as e:
            logger.error("Prefect did not accept %d alert events: %s", len(events), e)
            return JSONResponse(
                {"status": "unavailable", "reason": "Prefect is not reachable; retry"},
                status_code=503,
            )
        for alert in notice.alerts:
            self._metrics.alerts.labels(alert.status).inc()
            logger.info(
                "alert %s %s for %s/%s",
                alert.labels.get("alertname"),
                alert.status,
                alert.labels.get("service", "-"),
                alert.labels.get("environment", "-"),
            )
        return JSONResponse({"status": "accepted", "events": [e["id"] for e in events]})

    async def _notice(self, request: Request) -> AlertNotice | JSONResponse:
        """The notification, or the answer refusing it (bad token, too large, malformed)."""
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            logger.warning("alert notification without the receiver's token refused")
            return JSONResponse({"status": "refused", "reason": "bad token"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"status": "refused", "reason": "too large"}, status_code=413)
        try:
            return AlertNotice.model_validate_json(body)
        except ValidationError as e:
            return JSONResponse({"status": "refused", "reason": str(e)[:500]}, status_code=400)


def main(argv: list[str] | None = None) -> None:
    """Serve the monitor on loopback for this home; `deployments.monitor_jobs` runs its jobs."""
    parser = argparse.ArgumentParser(prog="python -m deployments.monitor")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from slipway.run_log import log_to_stderr

    log_to_stderr()

    import importlib
    import os

    import uvicorn

    from deployments.monitor_jobs import background_jobs
    from deployments.startup import wait_for_gate
    from slipway import heap
    from slipway.home import HOST
    from tasks.monitoring.layout import MonitoringLayout

    for module in ("blocks.monitoring", "tasks.monitoring.otlp", "tasks.monitoring.sync"):
        importlib.import_module(module)  # the jobs' imports (Prefect's), beside its server's start
    wait_for_gate()  # `up` writes the receiver's token and configs before it opens the gate
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
    uvicorn.run(
        app,
        host=HOST,
        port=args.port,
        # No dictConfig of uvicorn's own: replacing the handlers flushes Prefect's API log
        # handler, which waits up to 5 s on Prefect's events worker (the block loads' events).
        log_config=None,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
