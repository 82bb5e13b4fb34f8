"""What a server host of `slipway up` sets up once Prefect answers, and the checks before it starts.

`deployments.roles` decides the order; this module holds the steps: the
block types and default documents (skipped where unchanged), the registry's
login, the local repositories' push hooks, the set-up jobs that run side by
side, and the follower that reports when deployments are registered.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import SecretStr

from deployments.components import (
    ProcessSpec,
    check_database,
    check_port_free,
    registry_spec,
)
from deployments.monitoring import ensure_alert_notifications
from deployments.registry_auth import ensure_registry_login
from deployments.startup import Timeline, read_registration
from deployments.supervisor import Supervisor, UpOptions
from slipway.background import import_before_threads
from slipway.home import Ports, SlipwayHome
from slipway.http import shared_client

if TYPE_CHECKING:
    from blocks import GitServer, SlipwayBlock
    from blocks.monitoring import MonitoringSettings
    from tasks.catalog.entry import CatalogEntry

_B = TypeVar("_B", bound="SlipwayBlock")

_Jobs = dict[str, Callable[[], "list[ProcessSpec] | None"]]
"""Set-up jobs by name, for `SideBySide`: each returns the processes to start, if any."""

__all__ = [
    "BlocksSetUp",
    "MonitoringSetUp",
    "after_the_gate",
    "before_the_gate",
    "beside_the_gate",
    "check_before_start",
    "base_image_of_new_platform",
    "configure_blocks",
    "follow_registration",
    "http_ok",
    "reconnect_local_git",
    "registry_spec_of",
    "SideBySide",
    "use_embedded_prefect",
]


class SideBySide:
    """Set-up jobs in threads; the processes each returns start, from the calling thread, as it ends.

    A job may be submitted long before anything waits for it: the registry's
    login and the alert automations need only Prefect, so they run while the
    children's blocks are still being prepared, without holding back the gate.
    """

    def __init__(self, supervisor: Supervisor, timeline: Timeline) -> None:
        self.supervisor, self.timeline = supervisor, timeline
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="set-up")
        self.running: dict[Future[list[ProcessSpec] | None], str] = {}
        self.started: list[ProcessSpec] = []

    def submit(self, jobs: _Jobs) -> list[Future[list[ProcessSpec] | None]]:
        """Start ``jobs``; returns their futures, for `join`."""
        submitted = {self.pool.submit(job): name for name, job in jobs.items()}
        self.running.update(submitted)
        return list(submitted)

    def join(
        self,
        futures: list[Future[list[ProcessSpec] | None]] | None = None,
        *,
        answering: list[ProcessSpec] | None = None,
    ) -> None:
        """Wait for ``futures`` (every job without), starting what each returns as it ends.

        With ``answering``, also wait until those, and every process the jobs
        started, answer their health URLs, probing each from its start on: a
        slow job that starts nothing holds back no one's probe.

        Raises:
            SlipwayError: a job failed (the others run on; `close` waits for them).
            ComponentError: a component exited or did not answer in time.
        """
        awaited = set(futures if futures is not None else self.running)
        if answering is None:
            for _ in as_completed(awaited):
                self._collect(awaited)
            return
        waits = _probes([*answering, *self.started])
        self.supervisor.wait_all(
            waits,
            on_ready=lambda name: self.timeline.mark(f"{name} answers"),
            joining=lambda: self._collect(awaited),
        )

    def _collect(
        self, awaited: set[Future[list[ProcessSpec] | None]]
    ) -> dict[str, Callable[[], bool]] | None:
        """Start what the ended jobs returned; their probes, or None once ``awaited`` all ended."""
        new: list[ProcessSpec] = []
        for future in [f for f in self.running if f.done()]:
            name = self.running.pop(future)
            awaited.discard(future)
            for spec in future.result() or []:
                self.supervisor.start(spec)  # here, in one thread: the table is not shared
                new.append(spec)
            self.timeline.mark(f"{name} set up")
        if new:
            self.started.extend(new)
            self.supervisor.write_state()
        return _probes(new) if new or awaited else None

    def close(self) -> None:
        """Wait for the jobs still running (after a failure), then free the threads."""
        self.pool.shutdown(wait=True)


def _probes(specs: list[ProcessSpec]) -> dict[str, Callable[[], bool]]:
    return {
        s.name: functools.partial(http_ok, s.health_url, s.health_login)
        for s in specs
        if s.health_url is not None
    }


def follow_registration(supervisor: Supervisor, timeline: Timeline) -> None:
    """Report when registering the deployments ends; a failure each time its cause changes."""
    home, said = supervisor.options.home, ""
    while not supervisor.stopping:
        found = read_registration(home, supervisor.marker)
        if found is not None and found.state != "registering":
            if found.state == "registered":
                text = f"deployments: registered {found.total} in {found.seconds():.1f} s"
            else:
                text = f"deployments: registration FAILED: {found.error} Fix: {found.hint}"
            if text != said:
                timeline.mark(text)
                supervisor.report(text)
                said = text
            if found.state == "registered":
                return
        time.sleep(0.2)


@dataclass(frozen=True)
class BlocksSetUp:
    """What `configure_blocks` set up, so that the steps after it need not read it back."""

    written: tuple[SlipwayBlock, ...]
    """The default documents written by this start (a new home's), as a load would return them."""
    monitoring: MonitoringSettings
    """The monitoring settings, their ``ui_url`` already following the Prefect UI."""

    def default(self, kind: type[_B]) -> _B:
        """The ``default`` document of ``kind``: the one written now, else Prefect's."""
        return _written_or_loaded(self.written, kind)

    def wrote(self, kind: type[SlipwayBlock]) -> bool:
        """Whether this start wrote the default document of ``kind``."""
        return any(isinstance(d, kind) for d in self.written)


def _written_or_loaded(written: Sequence[SlipwayBlock], kind: type[_B]) -> _B:
    found = next((d for d in written if isinstance(d, kind)), None)
    return found if found is not None else kind.load_default()


def configure_blocks(supervisor: Supervisor, server_url: str, timeline: Timeline) -> BlocksSetUp:
    """Once Prefect answers: the block types, their default documents, the monitoring settings."""
    home, ports, report = supervisor.options.home, supervisor.options.ports, supervisor.report
    import blocks  # imports Prefect while the server boots
    from deployments.monitoring import follow_prefect_ui

    blocks.block_types_digest()  # while Prefect starts: the check after it is one request
    timeline.mark("supervisor imported Prefect and digested the block types")
    # Asked of the engine while Prefect boots: a new platform's settings are then
    # written once with it, not saved again after (six more round trips before the gate).
    import_before_threads("tasks.base_image", "tasks.containers")
    image = ThreadPoolExecutor(max_workers=1, thread_name_prefix="base-image")
    try:
        chosen = image.submit(base_image_of_new_platform, home, ports)
        supervisor.wait_until("prefect", lambda: http_ok(f"{server_url}/api/health"))
        timeline.mark("prefect answers")
        changed, written = blocks.set_up_blocks(home, ports, base_image=chosen.result)
    finally:
        image.shutdown(wait=False, cancel_futures=True)
    registered = "registered" if changed else "unchanged, kept"
    timeline.mark(f"block types {registered}, {len(written)} default documents written")
    for document in written:
        report(f"wrote default block document {document.get_block_type_slug()}/default")
    settings = _written_or_loaded(written, blocks.MonitoringSettings)
    ui_url = supervisor.options.public_url or server_url
    monitoring, ui_note = follow_prefect_ui(home, ui_url, settings)
    if ui_note is not None:
        report(ui_note)
    return BlocksSetUp(tuple(written), monitoring)


class MonitoringSetUp:
    """Monitoring's part of a server host's start: its configs before the gate, targets after.

    The configs need the catalog's services and the monitoring settings;
    Prometheus, Alertmanager and blackbox start as soon as they are written.
    The scrape targets need Docker's list of containers, and Prometheus
    re-reads their files by itself, so they are written while the parts start.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        found: BlocksSetUp,
        parts: list[ProcessSpec],
        missing: list[str],
    ) -> None:
        self.supervisor, self.found, self.parts, self.missing = supervisor, found, parts, missing
        self.entries: list[CatalogEntry] = []

    def configure(self) -> list[ProcessSpec]:
        """Write the configs and rules (the catalog first, on a new home); the parts to start."""
        from blocks import GitServer
        from deployments.monitoring import prepare_monitoring
        from tasks.catalog import Catalog

        options = self.supervisor.options
        catalog = Catalog(self.found.default(GitServer))
        if self.found.wrote(GitServer):
            # Before the gate: else the children and the set-up jobs create it at once,
            # and one's `git init` meets another's lock on its config.
            catalog.ensure()
        self.entries = catalog.entries()
        return prepare_monitoring(
            *(options.home, options.ports, self.parts, self.missing, self.supervisor.report),
            settings=self.found.monitoring,
            services=[entry.name for entry in self.entries],
        )

    def write_targets(self) -> None:
        """The scrape targets of the catalogued environments that run (after `configure`)."""
        from blocks import DeployTarget
        from tasks.monitoring.layout import MonitoringLayout
        from tasks.monitoring.sync import write_scrape_targets

        layout = MonitoringLayout.of(self.supervisor.options.home, self.supervisor.options.ports)
        write_scrape_targets(layout, self.entries, self.found.default(DeployTarget))


def before_the_gate(
    supervisor: Supervisor, found: BlocksSetUp, monitoring: MonitoringSetUp
) -> _Jobs:
    """What the children need before they read the blocks, beside ``monitoring``'s configs.

    Side by side: git's and Prefect's round trips. The monitoring
    parts start as soon as their configs are written, before the gate.
    """
    from blocks.webhook import WEBHOOK_SECRET_BLOCK, ensure_webhook_secret

    import_before_threads("tasks.catalog", "tasks.monitoring.config")
    report = supervisor.report

    def webhook_secret() -> None:
        if ensure_webhook_secret():
            report(f"created the webhook secret: Secret block '{WEBHOOK_SECRET_BLOCK}' in the UI")

    return {"webhook secret": webhook_secret, "monitoring configs": monitoring.configure}


def beside_the_gate(supervisor: Supervisor, found: BlocksSetUp, registry: str | None) -> _Jobs:
    """What needs only Prefect and no child waits for: it may run while the gate is still shut."""
    import_before_threads("blocks.notifications", "tasks.monitoring.automations")
    report = supervisor.report
    return {
        "registry": lambda: registry_spec_of(supervisor, registry),
        "notifications": lambda: ensure_alert_notifications(report, found.monitoring.ui_url),
    }


def after_the_gate(
    supervisor: Supervisor, found: BlocksSetUp, monitoring: MonitoringSetUp
) -> _Jobs:
    """What needs the catalog that ``monitoring`` made sure of and read."""
    from blocks import GitServer

    import_before_threads("tasks.git", "tasks.monitoring.sync", "tasks.containers")

    home, ports = supervisor.options.home, supervisor.options.ports
    return {
        "git hooks": lambda: reconnect_local_git(home, ports, found.default(GitServer)),
        "scrape targets": monitoring.write_targets,
    }


def base_image_of_new_platform(home: SlipwayHome, ports: Ports) -> str:
    """The base image a new platform's settings start from: one this machine's engine holds.

    ``python:3.12-slim`` where it is there (or pullable), else the local image
    `make setup` builds where Docker Hub is out of reach; ``$SLIPWAY_BASE_IMAGE``
    when set.
    """
    from blocks import DeployTarget
    from tasks.base_image import local_base_image

    return local_base_image(DeployTarget.local_default(home, ports))


def check_before_start(options: UpOptions, specs: list[ProcessSpec], registry: bool) -> None:
    """Refuse a taken port (the registry's too, when it runs) or an unreachable database."""
    ports = [(s.name, s.port) for s in specs if s.port is not None]
    for name, port in [*ports, *([("registry", options.ports.registry)] if registry else [])]:
        check_port_free(name, port)
    if options.database is not None:
        check_database(options.database)


def registry_spec_of(supervisor: Supervisor, binary: str | None) -> list[ProcessSpec]:
    """The registry, requiring the login of the registry block (which needs Prefect up)."""
    if binary is None:
        return []
    home, ports = supervisor.options.home, supervisor.options.ports
    login, note = ensure_registry_login(home, ports)
    if note is not None:
        supervisor.report(note)
    return [registry_spec(home, ports, binary, login)]


def reconnect_local_git(home: SlipwayHome, ports: Ports, server: GitServer) -> None:
    """Point every local repository's push hook at this bridge; the bridge drains the spool itself."""
    from tasks.git import install_push_hook, platform_push_hook

    hook = platform_push_hook(home, ports)
    if server.provider == "local" and server.root is not None:
        for repository in sorted(server.root.glob("*.git")):
            install_push_hook(repository, hook)


def use_embedded_prefect(env: dict[str, str]) -> None:
    """Point this process's own Prefect client at the server its children use."""
    for key, value in env.items():
        if key.startswith(("PREFECT_", "SLIPWAY_")):
            os.environ[key] = value


def http_ok(url: str, login: tuple[str, SecretStr] | None = None) -> bool:
    """Whether GET ``url`` answers 2xx within a second (with ``login``, where one is needed)."""
    import httpx  # here: `up` imports this module before Prefect's server starts

    auth = (login[0], login[1].get_secret_value()) if login is not None else None
    try:
        return shared_client().get(url, timeout=1.0, auth=auth).is_success
    except httpx.HTTPError:
        return False
