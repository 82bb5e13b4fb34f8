"""Keep Prometheus' targets and rules in step with the catalog and what runs.

Called by `slipway up` before Prometheus starts, by every release (through
its analysis) and by the monitor process on each deployment or environment
event and every few seconds as a fallback. Targets are file_sd files that
Prometheus re-reads by itself; only a change of the rule files needs a reload.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.errors import DockerUnavailable, MonitoringError
from tasks.monitoring.config import reload, write_rules
from tasks.monitoring.layout import MonitoringLayout
from tasks.monitoring.targets import ServiceTarget, running_targets, write_targets

if TYPE_CHECKING:
    from blocks import DeployTarget
    from tasks.catalog.entry import CatalogEntry

__all__ = ["refresh_scrape_targets", "sync_monitoring", "write_scrape_targets"]

logger = logging.getLogger(__name__)


def sync_monitoring(layout: MonitoringLayout, *, reload_rules: bool = True) -> list[ServiceTarget]:
    """Rewrite targets and rules from the catalog and the engine; returns the targets.

    Without a reachable Docker engine the targets are left as they are (the
    engine's outage is reported by `slipway status`, not by emptying them).

    Raises:
        MonitoringError: Prometheus refused the new rule files.
    """
    from blocks import Defaults, DeployTarget, GitServer
    from blocks.monitoring import MonitoringSettings
    from tasks.catalog import Catalog

    blocks = Defaults(GitServer, DeployTarget, MonitoringSettings)
    entries = Catalog(blocks[GitServer]).entries()
    rules_changed = write_rules(layout, blocks[MonitoringSettings], [e.name for e in entries])
    targets = write_scrape_targets(layout, entries, blocks[DeployTarget])
    if targets is None:
        return []
    if rules_changed and reload_rules:
        try:
            reload(layout)
        except MonitoringError as e:
            logger.warning("%s", e)
    return targets


def write_scrape_targets(
    layout: MonitoringLayout, entries: list[CatalogEntry], target: DeployTarget
) -> list[ServiceTarget] | None:
    """Rewrite the file_sd targets from ``entries`` and the engine of ``target``; returns them.

    Prometheus re-reads the files by itself, so `slipway up` writes them once
    Prometheus already starts. Without a reachable engine they are left as
    they are, and None says so.
    """
    from tasks.containers import docker_client

    try:
        client = docker_client(target, timeout=10)
    except DockerUnavailable as e:
        logger.warning("scrape targets left as they were: %s", e.message)
        return None
    try:
        targets = running_targets(client, entries, bind_address=target.bind_address)
    finally:
        client.close()
    write_targets(layout, targets)
    return targets


@task(name="refresh-scrape-targets", cache_policy=NO_CACHE)
def refresh_scrape_targets() -> list[ServiceTarget]:
    """`sync_monitoring` for this home, as a task of the flow that changed what runs."""
    return sync_monitoring(MonitoringLayout.from_env())
