"""What a server host of `slipway up` sets up once Prefect answers, and the checks before it starts.

`deployments.roles` decides the order; this module holds the steps: the
block types and default documents (skipped where unchanged), the registry's
login, the local repositories' push hooks, the set-up jobs that run side by
side, and the follower that reports when deployments are registered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx
from pydantic import SecretStr

from deployments.components import (
    ProcessSpec,
    check_database,
    check_port_free,
    registry_spec,
)
from deployments.monitoring import follow_embedded_prefect_ui
from deployments.registry_auth import ensure_registry_login
from deployments.startup import Timeline, read_registration
from deployments.supervisor import Supervisor, UpOptions
from slipway.health import probe_client
from slipway.home import Ports, SlipwayHome

__all__ = [
    "check_before_start",
    "choose_base_image",
    "configure_blocks",
    "follow_registration",
    "http_ok",
    "reconnect_local_git",
    "registry_spec_of",
    "set_up_side_by_side",
    "use_embedded_prefect",
]


def set_up_side_by_side(
    supervisor: Supervisor,
    timeline: Timeline,
    jobs: dict[str, Callable[[], list[ProcessSpec] | None]],
) -> list[ProcessSpec]:
    """Run the set-up ``jobs`` in threads; start the processes each returns as it ends.

    Raises:
        SlipwayError: a job failed; the others are waited for first.
    """
    started: list[ProcessSpec] = []
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="set-up") as pool:
        futures = {pool.submit(job): name for name, job in jobs.items()}
        for future in as_completed(futures):
            for spec in future.result() or []:
                supervisor.start(spec)  # here, in one thread: the children's table is not shared
                started.append(spec)
            timeline.mark(f"{futures[future]} set up")
    supervisor.write_state()
    return started


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


def configure_blocks(supervisor: Supervisor, server_url: str, timeline: Timeline) -> None:
    """Once Prefect answers: the block types, their default documents and the webhook secret."""
    home, ports, report = supervisor.options.home, supervisor.options.ports, supervisor.report
    import blocks  # imports Prefect while the server boots
    from blocks.webhook import WEBHOOK_SECRET_BLOCK, ensure_webhook_secret

    blocks.block_types_digest()  # while Prefect starts: the check after it is one request
    timeline.mark("supervisor imported Prefect and digested the block types")
    supervisor.wait_until("prefect", lambda: http_ok(f"{server_url}/api/health"))
    timeline.mark("prefect answers")
    changed, written = blocks.set_up_blocks(home, ports)
    registered = "registered" if changed else "unchanged, kept"
    timeline.mark(f"block types {registered}, {len(written)} default documents written")
    for slug in written:
        report(f"wrote default block document {slug}/default")
    ui_note = follow_embedded_prefect_ui(home, supervisor.options.public_url or server_url)
    if ui_note is not None:
        report(ui_note)
    # Side by side: Docker's, git's and Prefect's round trips, all before the gate.
    jobs: list[Callable[[], object]] = [ensure_webhook_secret]
    if blocks.PlatformSettings.get_block_type_slug() in written:
        jobs.append(lambda: choose_base_image(home, ports))
    if blocks.GitServer.get_block_type_slug() in written:
        # Before the gate: else the children and the set-up jobs create it at once,
        # and one's `git init` meets another's lock on its config.
        from tasks.catalog import Catalog

        jobs.append(lambda: Catalog.load_default().ensure())
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="blocks") as pool:
        done = [f.result() for f in [pool.submit(job) for job in jobs]]
    if done[0]:
        report(f"created the webhook secret: Secret block '{WEBHOOK_SECRET_BLOCK}' in the UI")
    timeline.mark("default documents and webhook secret")


def choose_base_image(home: SlipwayHome, ports: Ports) -> None:
    """Give a new platform's settings a base image this machine's engine holds.

    ``python:3.12-slim`` where it is there (or pullable), else the local image
    `make setup` builds where Docker Hub is out of reach; ``$SLIPWAY_BASE_IMAGE``
    when set.
    """
    from blocks import DEFAULT_DOCUMENT, DeployTarget, PlatformSettings
    from tasks.base_image import local_base_image

    image = local_base_image(DeployTarget.local_default(home, ports))
    settings = PlatformSettings.load_default()
    if settings.base_image != image:
        settings.model_copy(update={"base_image": image}).save(DEFAULT_DOCUMENT, overwrite=True)


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


def reconnect_local_git(home: SlipwayHome, ports: Ports) -> None:
    """Point every local repository's push hook at this bridge; the bridge drains the spool itself."""
    from blocks import GitServer
    from tasks.git import install_push_hook, platform_push_hook

    server = GitServer.load_default()
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
    auth = (login[0], login[1].get_secret_value()) if login is not None else None
    try:
        return probe_client().get(url, timeout=1.0, auth=auth).is_success
    except httpx.HTTPError:
        return False
