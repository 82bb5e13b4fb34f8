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
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from deployments.monitor import every, follow_events
from deployments.monitor_metrics import PlatformMetrics
from tasks.monitoring.layout import MonitoringLayout

__all__ = ["SLOW_SECONDS", "SYNC_SECONDS", "background_jobs", "open_findings"]

logger = logging.getLogger(__name__)

SYNC_SECONDS = 10.0
"""Fallback period of the target sync; deployment events trigger it at once."""
SLOW_SECONDS = 60.0
"""Period of the automation sync and of the findings gauge."""


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
