"""`slipway up`: what it starts on a host of each role, in which order, then supervises.

- ``embedded`` and ``server``/``all`` share `_start_server_host`: Prefect
  (on SQLite or PostgreSQL, every request authenticated), then blocks, then
  the registry (whose login the registry block holds), the docs portal, the
  bridge and monitoring (Prometheus, Alertmanager, blackbox, the monitor).
  Embedded serves the flows in-process; a server host applies
  them to the work pool instead (`deployments.pool`, a one-shot child), and
  ``all`` adds one worker on the same host.
- ``worker`` waits until the server at ``--server`` answers and has its pool
  set up, then runs Prefect's process worker.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess  # nosec B404 - one-shot child with a fixed argv
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from types import FrameType

import httpx
from pydantic import SecretStr

from deployments.components import (
    REGISTRY_HINT,
    ProcessSpec,
    WorkerSettings,
    bridge_spec,
    check_database,
    check_port_free,
    default_worker_name,
    docs_spec,
    prefect_server_spec,
    registry_binary,
    registry_spec,
    run_starter_spec,
    serve_spec,
    worker_spec,
)
from deployments.home_keys import prepare_home
from deployments.monitoring import planned_monitoring, start_monitoring
from deployments.pool import online_workers, server_heartbeat
from deployments.registry_auth import ensure_registry_login
from deployments.state import UpLock
from deployments.supervisor import Report, Stopped, Supervisor, UpOptions
from slipway.errors import ComponentError
from slipway.home import Ports, SlipwayHome
from slipway.private import private_umask

__all__ = ["start_host", "up"]


def up(options: UpOptions, report: Report = print) -> None:
    """Start every component, report when all are healthy, and supervise until stopped.

    Raises:
        ComponentError: a port is taken, Slipway already runs on this home, or
            a component did not become healthy. Nothing is left running.
    """
    home = options.home
    with private_umask():  # every child inherits it: what they create is 0600
        home.ensure()
        lock = UpLock(home)
        lock.acquire()
        try:
            began = time.monotonic()
            auth = prepare_home(home, options.role, report)
        except BaseException:
            lock.release()
            raise
        _supervise(Supervisor(options, uuid.uuid4().hex, report, auth), lock, began)


def _supervise(supervisor: Supervisor, lock: UpLock, began: float) -> None:
    """Start this host's part, watch it until stopped, then stop every child."""
    home, report = supervisor.options.home, supervisor.report
    try:
        with _stop_on_signals(supervisor):
            start_host(supervisor, began)
            supervisor.watch()
    except Stopped:
        pass
    finally:
        report("stopping Slipway ...")
        supervisor.stop_all()
        with contextlib.suppress(FileNotFoundError):
            (home.run / "up.json").unlink()
        lock.release()
        report("Slipway stopped.")


@contextlib.contextmanager
def _stop_on_signals(supervisor: Supervisor) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_host(supervisor: Supervisor, began: float) -> None:
    """Start what the role of this host runs, then report every component's health."""
    options, report = supervisor.options, supervisor.report
    if options.role == "worker":
        _start_worker_host(supervisor)
    else:
        _start_server_host(supervisor)
    ready = time.monotonic() - began
    supervisor.write_state(ready_seconds=ready)

    from deployments.status import collect_status, format_table, verdict

    results = collect_status(options.home)
    report(format_table(results))
    role = "" if options.role == "embedded" else f" (role {options.role})"
    report(
        f"Slipway is up on {options.home.root}{role} after {ready:.1f} s, {verdict(results)}. "
        "Stop it with Ctrl-C or `slipway down`."
    )


def _start_server_host(supervisor: Supervisor) -> None:
    """Prefect, the shared services, then the flows: served here or applied to the pool."""
    options, report = supervisor.options, supervisor.report
    home, ports = options.home, options.ports
    registry = registry_binary()
    server = prefect_server_spec(
        ports,
        options.database,
        auth=supervisor.auth,
        durable_leases=options.role != "embedded",
        public_url=options.public_url,
    )
    docs, bridge = docs_spec(ports), bridge_spec(ports, options.database)
    monitoring, missing = planned_monitoring(home, ports)
    _check_before_start(options, [server, docs, bridge, *monitoring], registry is not None)

    supervisor.start(server)
    if registry is None:
        report(
            f"registry: `docker-registry` is not installed; images cannot be pushed. Fix: {REGISTRY_HINT}"
        )
    supervisor.write_state(started=datetime.now(UTC))

    _configure_blocks(supervisor, server.url)
    reg = _start_registry(supervisor, registry) if registry is not None else None
    embedded = options.role == "embedded"
    for spec in (serve_spec(options.project_dir), docs, bridge) if embedded else (docs, bridge):
        supervisor.start(spec)
    start_monitoring(supervisor, monitoring, missing)
    supervisor.write_state()
    if not embedded:
        _apply_to_pool(supervisor)
    for waited in (reg, docs, bridge, *monitoring):
        if waited is not None and waited.health_url is not None:
            probe = functools.partial(_http_ok, waited.health_url, waited.health_login)
            supervisor.wait_until(waited.name, probe)

    _reconnect_local_git(home, ports)
    _wait_for_deployments(supervisor)
    if options.role == "all":
        _start_worker(supervisor)


def _configure_blocks(supervisor: Supervisor, server_url: str) -> None:
    """Once Prefect answers: the block types, their default documents and the webhook secret."""
    home, ports, report = supervisor.options.home, supervisor.options.ports, supervisor.report
    _use_embedded_prefect(supervisor.env)
    import blocks  # imports Prefect while the server boots
    from blocks.webhook import WEBHOOK_SECRET_BLOCK, ensure_webhook_secret

    supervisor.wait_until("prefect", lambda: _http_ok(f"{server_url}/api/health"))
    blocks.register_block_types()
    written = blocks.ensure_default_documents(home, ports)
    for slug in written:
        report(f"wrote default block document {slug}/default")
    if blocks.PlatformSettings.get_block_type_slug() in written:
        _choose_base_image(home, ports)
    if ensure_webhook_secret():
        report(f"created the webhook secret: Secret block '{WEBHOOK_SECRET_BLOCK}' in the UI")


def _choose_base_image(home: SlipwayHome, ports: Ports) -> None:
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


def _wait_for_deployments(supervisor: Supervisor) -> None:
    """Until every deployment that prefect.yaml declares is registered: served, or applied."""
    from deployments.serve import declared_deployments
    from deployments.status import registered_deployments

    options = supervisor.options
    wanted = {d.name for d in declared_deployments(options.project_dir)}
    supervisor.wait_until(
        "prefect" if options.role != "embedded" else "deployments",
        lambda: wanted <= registered_deployments(options.ports.prefect_api_url, wanted),
    )


def _check_before_start(options: UpOptions, specs: list[ProcessSpec], registry: bool) -> None:
    """Refuse a taken port (the registry's too, when it runs) or an unreachable database."""
    ports = [(s.name, s.port) for s in specs if s.port is not None]
    for name, port in [*ports, *([("registry", options.ports.registry)] if registry else [])]:
        check_port_free(name, port)
    if options.database is not None:
        check_database(options.database)


def _start_registry(supervisor: Supervisor, binary: str) -> ProcessSpec:
    """The registry, requiring the login of the registry block (which needs Prefect up)."""
    home, ports = supervisor.options.home, supervisor.options.ports
    login, note = ensure_registry_login(home, ports)
    if note is not None:
        supervisor.report(note)
    spec = registry_spec(home, ports, binary, login)
    supervisor.start(spec)
    return spec


def _apply_to_pool(supervisor: Supervisor) -> None:
    """Apply prefect.yaml to the work pool in a one-shot child; fail with its log tail."""
    options, report = supervisor.options, supervisor.report
    code, crash = options.code, options.crash
    if code is None:
        raise ComponentError(
            f"role {options.role} needs the commit that workers run", hint="pass --commit SHA"
        )
    if code.dirty:
        report(
            f"warning: {options.project_dir} has uncommitted changes; workers run commit "
            f"{code.commit[:12]} without them"
        )
    log = options.home.logs / "apply.log"
    argv = [sys.executable, "-m", "deployments.pool", "--project", str(options.project_dir)]
    argv += ["--repository", code.repository, "--commit", code.commit]
    argv += ["--heartbeat-seconds", str(crash.heartbeat_seconds)]
    argv += ["--crash-after", str(crash.crash_after_seconds)]
    with log.open("wb") as out:
        try:
            done = subprocess.run(  # nosec B603 - fixed argv
                argv,
                # Not the project: `-m` would import `deployments` from there, and
                # --project may be another checkout than the one Slipway runs from.
                cwd=options.home.root,
                env=supervisor.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=options.startup_timeout * 2,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise ComponentError(
                f"applying prefect.yaml to the work pool took over {e.timeout:.0f} s",
                hint=f"see {log}",
            ) from e
    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
    if done.returncode != 0:
        raise ComponentError(
            f"applying prefect.yaml to the work pool failed:\n{tail}", hint=f"see {log}"
        )
    report(tail.splitlines()[-1] if tail else "applied prefect.yaml to the work pool")


def _start_worker_host(supervisor: Supervisor) -> None:
    """Wait for the server and its pool set-up, then run the worker."""
    options = supervisor.options
    assert options.worker is not None  # the CLI always sets it for this role
    api = options.worker.api_url
    supervisor.write_state(started=datetime.now(UTC))
    _use_embedded_prefect(supervisor.env)
    deadline = time.monotonic() + options.startup_timeout
    heartbeat = server_heartbeat(api)
    while heartbeat is None:
        supervisor.check_stopping()
        if time.monotonic() > deadline:
            raise ComponentError(
                f"the Prefect server at {api} did not answer, or has no Slipway work pool "
                f"set-up, within {options.startup_timeout:.0f} s",
                hint="start the server host first with `slipway up --role server`, "
                "and check --server and the network between the hosts",
            )
        time.sleep(0.5)
        heartbeat = server_heartbeat(api)
    _start_worker(supervisor, heartbeat)


def _start_worker(supervisor: Supervisor, heartbeat: int | None = None) -> None:
    """Start the pool worker and wait until the server lists it as online."""
    options = supervisor.options
    settings = options.worker or WorkerSettings(api_url=options.ports.prefect_api_url)
    beat = heartbeat if heartbeat is not None else options.crash.heartbeat_seconds
    settings = replace(settings, heartbeat_seconds=beat)
    supervisor.start(run_starter_spec(settings, options.home))  # forks the worker's runs
    supervisor.start(worker_spec(settings, options.home))
    supervisor.write_state()
    name = settings.name or default_worker_name(options.home)
    supervisor.wait_until("worker", lambda: name in online_workers(settings.api_url, settings.pool))


def _reconnect_local_git(home: SlipwayHome, ports: Ports) -> None:
    """Point every local repository's push hook at this bridge; the bridge drains the spool itself."""
    from blocks import GitServer
    from tasks.git import install_push_hook, platform_push_hook

    server = GitServer.load_default()
    hook = platform_push_hook(home, ports)
    if server.provider == "local" and server.root is not None:
        for repository in sorted(server.root.glob("*.git")):
            install_push_hook(repository, hook)


def _use_embedded_prefect(env: dict[str, str]) -> None:
    """Point this process's own Prefect client at the server its children use."""
    for key, value in env.items():
        if key.startswith(("PREFECT_", "SLIPWAY_")):
            os.environ[key] = value


def _http_ok(url: str, login: tuple[str, SecretStr] | None = None) -> bool:
    auth = (login[0], login[1].get_secret_value()) if login is not None else None
    try:
        return httpx.get(url, timeout=1.0, auth=auth).is_success
    except httpx.HTTPError:
        return False
