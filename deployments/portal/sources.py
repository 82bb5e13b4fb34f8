"""Where the portal reads from, opened once per process.

The catalog (git), the artifact store (docs, scans, insights), Prefect
(release records, reports, the UI's address) and monitoring, behind one
`PortalSources`. Reading the whole catalog on every page would cost a
thousand-service platform dearly, so `CatalogCache` keeps the last snapshot
and reads again only when the catalog's branch has moved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.exceptions import ObjectNotFound

from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.model import CatalogModel, CatalogSnapshot
from tasks.monitoring.view import MonitoringView
from tasks.storage import ObjectStore

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from blocks.git_server import GitServer

__all__ = ["CatalogCache", "PortalSources", "environment_port"]


class CatalogCache:
    """The catalog snapshot, read again only when the catalog's tip moved."""

    def __init__(self, server: GitServer) -> None:
        self.server = server
        self._model = CatalogModel(Catalog(server))
        self._lock = threading.Lock()
        self._tip: str | None = None
        self._snapshot = CatalogSnapshot()

    def snapshot(self) -> CatalogSnapshot:
        """Every entity as of the catalog's current tip."""
        tip = self._model.catalog.tip()
        with self._lock:
            if tip != self._tip or tip is None:
                self._snapshot = self._model.read()
                self._tip = tip
            return self._snapshot


def environment_port(entry: CatalogEntry, environment: str) -> int:
    """The port an environment serves on: its provisioned one, else the service's."""
    record = entry.outputs.get(environment)
    return record.port if record is not None and record.port else entry.port


@dataclass
class PortalSources:
    """Everything the portal's pages are read from."""

    catalog: CatalogCache
    store: ObjectStore
    client: SyncPrefectClient
    monitoring: MonitoringView
    ui_url: str
    """The Prefect UI, for links to runs, artifacts and forms."""
    bind_address: str
    """Where the deploy target runs services; health is probed there only."""
    stale_after: timedelta
    _deployments: dict[str, str] = field(default_factory=dict)

    def service_url(self, entry: CatalogEntry, environment: str) -> str:
        """Where an environment of ``entry`` answers, e.g. ``http://127.0.0.1:8101/``."""
        return f"http://{self.bind_address}:{environment_port(entry, environment)}/"

    def run_link(self, flow_run_id: str) -> str | None:
        """The UI page of a flow run, when the id is one."""
        try:
            return f"{self.ui_url}/runs/flow-run/{UUID(flow_run_id)}"
        except ValueError:
            return None

    def artifact_link(self, key: str) -> str:
        """The UI page of a keyed artifact, with every version."""
        return f"{self.ui_url}/artifacts/key/{key}"

    def form_link(self, deployment: str) -> str | None:
        """The UI's run form of ``flow/deployment``, when it is deployed here."""
        if deployment not in self._deployments:
            try:
                found = self.client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                return None
            self._deployments[deployment] = str(found.id)
        return f"{self.ui_url}/deployments/deployment/{self._deployments[deployment]}/run"
