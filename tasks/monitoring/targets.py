"""Scrape targets from the catalog and what runs: the file_sd files Prometheus re-reads.

A service environment is a target while a serving container of the release
contract exists for it (``dev.slipway.live=true``), running or not: a stopped
one must stay a target, or its outage would silence its own alert. Its
catalog entry adds the owner, hence the team that alerts go to.

Three files, each rewritten atomically and only when its content changes:

- ``services.json``: ``host:port`` of each environment, scraped at ``/metrics``;
- ``probes.json``: each environment's health URL, for the blackbox exporter;
- ``platform.json``: the monitor process and the webhook bridge.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slipway.home import HOST
from tasks.monitoring.layout import MonitoringLayout, write_atomically
from tasks.monitoring.teams import team_of
from tasks.release.contract import (
    LABEL_ENVIRONMENT,
    LABEL_LIVE,
    LABEL_PORT,
    LABEL_SERVICE,
    LABEL_SHA,
)

if TYPE_CHECKING:
    import docker

    from tasks.catalog import CatalogEntry

__all__ = ["ServiceTarget", "platform_targets", "running_targets", "write_targets"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceTarget:
    """One environment of one service that Prometheus watches."""

    service: str
    environment: str
    sha: str
    """The full commit its serving container runs."""
    team: str
    """The owning team's slug (`tasks.monitoring.teams.team_of`)."""
    address: str
    """``host:port`` it serves on."""

    def labels(self) -> dict[str, str]:
        """The labels every series and alert of this target carries."""
        return {
            "service": self.service,
            "environment": self.environment,
            "sha": self.sha[:12],
            "team": self.team,
        }


def running_targets(
    client: docker.DockerClient, entries: list[CatalogEntry], *, bind_address: str = HOST
) -> list[ServiceTarget]:
    """The catalogued environments that have a serving container, stopped ones included.

    A container whose service is not in the catalog is left out: nobody owns it.
    """
    owners = {e.name: e.owner for e in entries}
    found: dict[tuple[str, str], ServiceTarget] = {}
    containers = client.containers.list(all=True, filters={"label": [f"{LABEL_LIVE}=true"]})
    for container in sorted(containers, key=lambda c: str(c.attrs.get("Created", ""))):
        labels = container.labels or {}
        service, environment = labels.get(LABEL_SERVICE, ""), labels.get(LABEL_ENVIRONMENT, "")
        port = labels.get(LABEL_PORT, "")
        if service not in owners or not environment or not port.isdigit():
            continue
        found[(service, environment)] = ServiceTarget(  # the newest container wins
            service=service,
            environment=environment,
            sha=labels.get(LABEL_SHA, ""),
            team=team_of(owners[service]),
            address=f"{bind_address}:{port}",
        )
    return sorted(found.values(), key=lambda t: (t.service, t.environment))


def platform_targets(layout: MonitoringLayout) -> list[dict[str, Any]]:
    """The platform's own metrics: the monitor process and the webhook bridge."""
    ports = layout.ports
    return [
        {"targets": [f"{HOST}:{ports.monitor}"], "labels": {"component": "monitor"}},
        {"targets": [f"{HOST}:{ports.bridge}"], "labels": {"component": "bridge"}},
    ]


def write_targets(layout: MonitoringLayout, targets: list[ServiceTarget]) -> bool:
    """Rewrite the three file_sd files; returns whether any of them changed."""
    layout.ensure()
    services = [{"targets": [t.address], "labels": t.labels()} for t in targets]
    probes = [{"targets": [f"http://{t.address}/healthz"], "labels": t.labels()} for t in targets]
    changed = False
    for name, content in (
        ("services", services),
        ("probes", probes),
        ("platform", platform_targets(layout)),
    ):
        text = json.dumps(content, indent=2, sort_keys=True) + "\n"
        changed = write_atomically(layout.targets / f"{name}.json", text) or changed
    if changed:
        logger.info("scrape targets now: %s", ", ".join(t.address for t in targets) or "none")
    return changed
