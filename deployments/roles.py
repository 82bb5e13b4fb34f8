"""`slipway up`: what it starts on a host of each role, in which order, then supervises.

- ``embedded`` and ``server``/``all`` share `_start_server_host`: Prefect
  (on SQLite or PostgreSQL, every request authenticated) and, beside its
  start, the Python children (docs portal, bridge, monitor), forked from
  `up` once it imported their modules (`deployments.warm_start`), which
  wait at the gate (`deployments.startup`); then blocks; then, side by
  side before the gate, the webhook secret and monitoring's configs, whose
  parts (Prometheus, Alertmanager, blackbox) start as soon as those are
  written; then, while the children read the blocks, the registry (whose
  login the registry block holds) and the scrape targets. Ready means every
  component answers: deployments register after that, served here by the
  runner (started with the others, it waits at a second gate) or applied to
  the work pool by a one-shot child (`deployments.pool`), and `slipway
  status` shows how far that got.
  ``all`` adds one worker on the same host.
- ``worker`` waits until the server at ``--server`` answers and has its pool
  set up, then runs Prefect's process worker.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess  # nosec B404 - one-shot child with a fixed argv
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from types import FrameType

from deployments.components import (
    REGISTRY_HINT,
    ProcessSpec,
    WorkerSettings,
    bridge_spec,
    default_worker_name,
    docs_spec,
    prefect_server_spec,
    registry_binary,
    run_starter_spec,
    serve_spec,
    worker_spec,
)
from deployments.home_keys import prepare_home
from deployments.monitoring import planned_monitoring
from deployments.pool import PlatformCode, online_workers, server_heartbeat
from deployments.server_setup import (
    MonitoringSetUp,
    SideBySide,
    after_the_gate,
    before_the_gate,
    beside_the_gate,
    check_before_start,
    configure_blocks,
    follow_registration,
    use_embedded_prefect,
)
from deployments.startup import (
    RegistrationProgress,
    Timeline,
    close_gate,
    open_gate,
)
from deployments.state import UpLock
from deployments.supervisor import Report, Stopped, Supervisor, UpOptions
from deployments.warm_start import preload
from slipway.errors import ComponentError, SlipwayError
from slipway.health import ComponentHealth
from slipway.home import HOST
from slipway.prefect_patches import apply_client_patches
from slipway.private import private_umask
from tasks.monitoring.layout import MonitoringLayout

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
    """Start this host's part, watch it until stopped, then stop every child.

    The signal handlers stay until every child is stopped: a second SIGTERM
    does not cut the stop short. A stop before every component answered
    raises ComponentError, after it.
    """
    home, report = supervisor.options.home, supervisor.report
    with _stop_on_signals(supervisor):
        try:
            start_host(supervisor, began)
            supervisor.watch()
        except Stopped:
            if not supervisor.ready:
                report(f"{supervisor.stopped_by} after {time.monotonic() - began:.1f} s of start")
        finally:
            report("stopping Slipway ...")
            supervisor.stop_all()
            with contextlib.suppress(FileNotFoundError):
                (home.run / "up.json").unlink()
            lock.release()
            report("Slipway stopped.")
    if not supervisor.ready:
        raise ComponentError(
            f"`slipway up` was stopped by {supervisor.stopped_by} before every component answered",
            hint="start it again with `slipway up`; nothing of this start runs now",
        )


@contextlib.contextmanager
def _stop_on_signals(supervisor: Supervisor) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        supervisor.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_host(supervisor: Supervisor, began: float) -> None:
    """Start what the role of this host runs, then report every component's health.

    Ready means every component answers; deployments may still be registering
    then, and `follow_registration` reports when that ends, either way.
    """
    options, report = supervisor.options, supervisor.report
    timeline = Timeline(options.home, began)
    # Before anything imports Prefect (reading prefect.yaml does): its settings are read once.
    use_embedded_prefect(supervisor.env)
    systems = None
    if options.role == "worker":
        _start_worker_host(supervisor)
    else:
        systems = _start_server_host(supervisor, timeline)
    ready = timeline.mark("every component answers")
    supervisor.ready = True
    supervisor.write_state(ready_seconds=ready)

    from deployments.status import collect_status, format_table, verdict

    results = collect_status(options.home, systems.result() if systems else None)
    timeline.mark("status probed")
    report(format_table(results))
    role = "" if options.role == "embedded" else f" (role {options.role})"
    report(
        f"Slipway is up on {options.home.root}{role} after {ready:.1f} s, {verdict(results)}. "
        "Stop it with Ctrl-C or `slipway down`."
    )
    open_gate(options.home, supervisor.marker, "ready")  # the runner registers deployments now
    if options.role in ("server", "all"):
        apply = functools.partial(_apply_in_background, supervisor)
        threading.Thread(target=apply, name="apply", daemon=True).start()
    if options.role != "worker":
        follow = functools.partial(follow_registration, supervisor, timeline)
        threading.Thread(target=follow, name="registration", daemon=True).start()


def _start_server_host(supervisor: Supervisor, timeline: Timeline) -> Future[list[ComponentHealth]]:
    """Prefect with the Python children beside it; then the blocks; then the rest side by side.

    The children import while Prefect starts and wait at the gate
    (`deployments.startup`) until the blocks they read are set up.
    Deployments register once every component answers (`start_host`):
    served by the runner, or applied to the work pool by a one-shot child.

    Returns:
        The health of the systems the blocks point at (git, Docker, the
        artifact store), probed while the components start, for the table.
    """
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
    check_before_start(options, [server, docs, bridge, *monitoring], registry is not None)
    embedded = options.role == "embedded"
    if not embedded:
        _platform_code(options)
    close_gate(home)
    # First: every second before it is a second the server answers later. Reading
    # prefect.yaml imports Prefect (its trigger types), 1.5 s that now overlap its start.
    supervisor.start(server)
    if registry is None:
        report(
            f"registry: `docker-registry` is not installed; images cannot be pushed. Fix: {REGISTRY_HINT}"
        )
    supervisor.write_state(started=datetime.now(UTC))
    python = [s for s in monitoring if s.argv[0] == sys.executable]
    _start_runner_and_children(supervisor, timeline, [docs, bridge, *python])

    found = configure_blocks(supervisor, server.url, timeline)
    binaries = [s for s in monitoring if s not in python]
    parts = MonitoringSetUp(supervisor, found, binaries, missing)
    side = SideBySide(supervisor, timeline)
    try:
        # The monitoring parts start as soon as their configs are written, before the gate.
        gate = side.submit(before_the_gate(supervisor, found, parts))
        side.submit(beside_the_gate(supervisor, found, registry))
        side.join(gate)
        MonitoringLayout.of(home, ports).receiver_token()  # before the monitor reads it
        open_gate(home, supervisor.marker, "configured")
        timeline.mark("gate open: the children read the blocks now")
        systems = _probe_configured_systems(f"{HOST}:{ports.registry}")
        side.submit(after_the_gate(supervisor, found, parts))
        side.join(answering=[docs, bridge, *python])
    finally:
        side.close()
    if options.role == "all":
        _start_worker(supervisor)
    return systems


def _start_runner_and_children(
    supervisor: Supervisor, timeline: Timeline, children: list[ProcessSpec]
) -> None:
    """The embedded runner (cold for another checkout's code), then the forked ``children``."""
    options = supervisor.options
    runner = [serve_spec(options.project_dir)] if options.role == "embedded" else []
    for cold in (spec for spec in runner if not spec.preload):
        supervisor.start(cold)
    _registering(supervisor)
    timeline.mark("read prefect.yaml")
    warm = [spec for spec in runner if spec.preload]
    _start_python_children(supervisor, timeline, [*children, *warm])


def _probe_configured_systems(local_registry: str) -> Future[list[ComponentHealth]]:
    """Probe git, Docker and the artifact store in a thread, beside the components' start.

    They are not components of `up`, and their probes (Docker's API, the base
    image) took 0.3 to 0.8 s after every component already answered.
    """
    from deployments.status import configured_systems

    probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
    try:
        return probe.submit(configured_systems, local_registry)
    finally:
        probe.shutdown(wait=False)


def _start_python_children(
    supervisor: Supervisor, timeline: Timeline, specs: list[ProcessSpec]
) -> None:
    """Import what ``specs`` import, once, then fork each from here (`deployments.warm_start`).

    A child whose module failed to import here starts cold instead, and
    fails on its own, with its own log; `up` goes on and says which.
    """
    apply_client_patches()  # here and in the children forked below
    modules = (module for spec in specs for module in spec.preload)
    failed = preload(modules, check=supervisor.check_stopping)
    timeline.mark("imported what the Python children import")
    for module, error in failed.items():
        supervisor.report(
            f"warning: `up` could not import {module} ({error}); the children that need it start cold"
        )
    for spec in specs:
        cold = any(module in failed for module in spec.preload)
        supervisor.start(replace(spec, preload=()) if cold else spec)
    supervisor.write_state()  # a cold one too, for `slipway status`


def _platform_code(options: UpOptions) -> PlatformCode:
    """The commit workers run (roles ``server`` and ``all``), refused before anything starts."""
    if options.code is None:
        raise ComponentError(
            f"role {options.role} needs the commit that workers run", hint="pass --commit SHA"
        )
    return options.code


def _registering(supervisor: Supervisor) -> RegistrationProgress:
    """A new registration record for this `up`: `slipway status` shows it from the start."""
    from deployments.serve import declared_deployments

    progress = RegistrationProgress(supervisor.options.home, supervisor.marker)
    progress.begin(len(declared_deployments(supervisor.options.project_dir)))
    return progress


def _apply_in_background(supervisor: Supervisor) -> None:
    """Apply prefect.yaml to the work pool, keeping the registration record current."""
    progress = _registering(supervisor)
    try:
        _apply_to_pool(supervisor)
    except SlipwayError as e:
        progress.fail(e.message, e.hint or "see logs/apply.log under the Slipway home")
        return
    progress.finish()


def _apply_to_pool(supervisor: Supervisor) -> None:
    """Apply prefect.yaml to the work pool in a one-shot child; fail with its log tail."""
    options, report = supervisor.options, supervisor.report
    code, crash = _platform_code(options), options.crash
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
