"""What the monitor process does in the background, besides answering requests.

- follow Prefect's event stream into the platform metrics (and, when an OTLP
  endpoint is set, ship every event there);
- keep scrape targets and rules in step: at once after a deployment or
  environment event, else every `SYNC_SECONDS`;
- every `SLOW_SECONDS`: the notification automations (team channels appear
  and go in the UI) and the open findings of each service's newest scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx

from deployments.monitor_metrics import FINAL_STATES, RELEASE_FLOWS, PlatformMetrics
from tasks.monitoring.layout import MonitoringLayout

__all__ = [
    "SLOW_SECONDS",
    "SYNC_SECONDS",
    "background_jobs",
    "every",
    "follow_events",
    "open_findings",
]

logger = logging.getLogger(__name__)

SYNC_SECONDS = 10.0
"""Fallback period of the target sync; deployment events trigger it at once."""
SLOW_SECONDS = 60.0
"""Period of the automation sync and of the findings gauge."""
_TARGET_EVENTS = ("slipway.deployment.", "slipway.environment.", "prefect.flow-run.Completed")


def background_jobs(
    layout: MonitoringLayout, metrics: PlatformMetrics, *, api_url: str
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The coroutines the monitor app runs for its lifetime."""
    from blocks.monitoring import MonitoringSettings
    from tasks.monitoring.otlp import ship_logs
    from tasks.monitoring.sync import sync_monitoring

    settings = MonitoringSettings.load_default()
    shipper = ship_logs(settings, component="slipway-monitor")
    wake = asyncio.Event()

    def sync_targets() -> None:
        sync_monitoring(layout)

    def slow() -> None:
        from tasks.monitoring.automations import ensure_notification_automations

        ensure_notification_automations(MonitoringSettings.load_default().ui_url)
        metrics.set_scan_findings(open_findings())

    async def events() -> None:
        await follow_events(
            metrics,
            api_url=api_url,
            on_change=wake.set,
            forward=shipper.event if shipper is not None else None,
        )

    return [
        events,
        lambda: every(SYNC_SECONDS, sync_targets, wake=wake),
        lambda: every(SLOW_SECONDS, slow),
    ]


def open_findings() -> dict[str, dict[str, int]]:
    """Service -> severity -> open findings of its newest default-branch scan."""
    from blocks import ArtifactStore
    from tasks.catalog import Catalog
    from tasks.scanners.history import baseline_sha, load_summary
    from tasks.storage import open_store

    store = open_store(ArtifactStore.load_default())
    today = datetime.now(UTC).date()
    counts: dict[str, dict[str, int]] = {}
    for service in sorted(Catalog.load_default().names()):
        newest = baseline_sha(store, service, "")  # the newest scan of any commit
        summary = load_summary(store, service, newest) if newest else None
        if summary is not None:
            counts[service] = summary.counts_by_severity(today)
    return counts


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
