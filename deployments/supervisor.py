"""`slipway up` and `slipway down`: start, watch and stop the embedded platform.

Order matters: Prefect first (everything else talks to it), then the block
types and default documents, then the processes that read those blocks (the
deployment runner and the docs portal). A child that dies is restarted with
a back-off; one that keeps dying is left down and shown as such by `status`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess  # nosec B404 - long-running children; argv lists only
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from deployments.components import (
    REGISTRY_HINT,
    ProcessSpec,
    bridge_spec,
    check_port_free,
    child_env,
    docs_spec,
    prefect_server_spec,
    registry_binary,
    registry_spec,
    serve_spec,
)
from deployments.state import ChildRecord, UpLock, UpState, read_state, write_state
from slipway.errors import ComponentError
from slipway.home import Ports, SlipwayHome

__all__ = ["UpOptions", "down", "marked_processes", "up"]

Report = Callable[[str], None]

_MAX_RESTARTS = 5
_STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class UpOptions:
    """What `slipway up` was asked to do."""

    home: SlipwayHome
    """The data directory."""
    ports: Ports
    """The loopback ports."""
    project_dir: Path
    """The directory that holds prefect.yaml and the flows."""
    startup_timeout: float = 90.0
    """Seconds to wait for each component to become healthy."""


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class _Stop(Exception):
    """Raised inside waits when a stop was requested."""


class _Supervisor:
    def __init__(self, options: UpOptions, marker: str, report: Report) -> None:
        self.options = options
        self.marker = marker
        self.report = report
        self.env = child_env(options.home, options.ports, marker)
        self.children: dict[str, _Child] = {}
        self.stopping = False

    # -- processes ---------------------------------------------------------
    def start(self, spec: ProcessSpec) -> None:
        log = (self.options.home.logs / f"{spec.name}.log").open("ab")
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {spec.name}\n".encode())
        log.flush()
        process = subprocess.Popen(  # nosec B603 - fixed argv
            spec.argv,
            cwd=self.options.project_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole
        )
        previous = self.children.get(spec.name)
        restarts = previous.restarts if previous else []
        self.children[spec.name] = _Child(spec, process, log, restarts)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.options.home.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_until(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.options.startup_timeout
        child = self.children[name]
        while not ready():
            if self.stopping:
                raise _Stop
            code = child.process.poll()
            if code is not None:
                raise ComponentError(
                    f"{name} exited with code {code} while starting:\n{self.log_tail(name)}",
                    hint=f"see {self.options.home.logs / (name + '.log')}",
                )
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"{name} was not healthy within {self.options.startup_timeout:.0f} s:\n"
                    f"{self.log_tail(name)}",
                    hint=f"see {self.options.home.logs / (name + '.log')}",
                )
            time.sleep(0.1)

    def watch(self) -> None:
        """Restart children that die, with a back-off, until a stop is requested."""
        while not self.stopping:
            for child in list(self.children.values()):
                code = child.process.poll()
                if code is None or child.given_up:
                    continue
                now = time.monotonic()
                child.restarts[:] = [t for t in child.restarts if now - t < 300]
                if len(child.restarts) >= _MAX_RESTARTS:
                    child.given_up = True
                    self.report(
                        f"{child.spec.name} keeps exiting (code {code}); left down. "
                        f"See {self.options.home.logs / (child.spec.name + '.log')}"
                    )
                    continue
                child.restarts.append(now)
                self.report(f"{child.spec.name} exited with code {code}; restarting")
                time.sleep(min(2 ** len(child.restarts) / 4, 8))
                self.start(child.spec)
                self.write_state()
            time.sleep(0.25)

    def stop_all(self) -> None:
        """SIGTERM every process group, newest first, then SIGKILL what remains."""
        for child in reversed(list(self.children.values())):
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
            child.log.close()
        _kill_marked(self.marker)

    # -- state -------------------------------------------------------------
    def write_state(
        self, ready_seconds: float | None = None, started: datetime | None = None
    ) -> None:
        previous = read_state(self.options.home)
        write_state(
            self.options.home,
            UpState(
                supervisor_pid=os.getpid(),
                marker=self.marker,
                started_at=started or (previous.started_at if previous else datetime.now(UTC)),
                ready_seconds=ready_seconds
                if ready_seconds is not None
                else (previous.ready_seconds if previous else None),
                ports=self.options.ports.as_dict(),
                project_dir=str(self.options.project_dir),
                children=[
                    ChildRecord(name=c.spec.name, pid=c.process.pid, url=c.spec.url)
                    for c in self.children.values()
                ],
            ),
        )


def up(options: UpOptions, report: Report = print) -> None:
    """Start every component, report when all are healthy, and supervise until stopped.

    Raises:
        ComponentError: a port is taken, Slipway already runs on this home, or
            a component did not become healthy. Nothing is left running.
    """
    home = options.home
    home.ensure()
    lock = UpLock(home)
    lock.acquire()
    began = time.monotonic()
    supervisor = _Supervisor(options, uuid.uuid4().hex, report)
    try:
        with _stop_on_signals(supervisor):
            _start_everything(supervisor, began)
            supervisor.watch()
    except _Stop:
        pass
    finally:
        report("stopping Slipway ...")
        supervisor.stop_all()
        with contextlib.suppress(FileNotFoundError):
            (home.run / "up.json").unlink()
        lock.release()
        report("Slipway stopped.")


def _start_everything(supervisor: _Supervisor, began: float) -> None:
    options, report = supervisor.options, supervisor.report
    home, ports = options.home, options.ports
    registry = registry_binary()
    server, docs, bridge = prefect_server_spec(ports), docs_spec(ports), bridge_spec(ports)
    reg = registry_spec(home, ports, registry) if registry is not None else None
    for spec in (server, docs, bridge, reg):
        if spec is not None and spec.port is not None:
            check_port_free(spec.name, spec.port)

    supervisor.start(server)
    if reg is not None:
        supervisor.start(reg)
    else:
        report(
            f"registry: `docker-registry` is not installed; images cannot be pushed. Fix: {REGISTRY_HINT}"
        )
    supervisor.write_state(started=datetime.now(UTC))

    _use_embedded_prefect(supervisor.env)
    import blocks  # imports Prefect while the server boots
    from blocks.webhook import WEBHOOK_SECRET_BLOCK, ensure_webhook_secret

    supervisor.wait_until("prefect", lambda: _http_ok(f"{server.url}/api/health"))
    blocks.register_block_types()
    for slug in blocks.ensure_default_documents(home, ports):
        report(f"wrote default block document {slug}/default")
    if ensure_webhook_secret():
        report(f"created the webhook secret: Secret block '{WEBHOOK_SECRET_BLOCK}' in the UI")

    for spec in (serve_spec(options.project_dir), docs, bridge):
        supervisor.start(spec)
    supervisor.write_state()
    for spec in (reg, docs, bridge):
        if spec is not None and spec.health_url is not None:
            url = spec.health_url
            supervisor.wait_until(spec.name, functools.partial(_http_ok, url))

    _reconnect_local_git(home, ports, report)

    from deployments.serve import declared_deployments
    from deployments.status import registered_deployments

    wanted = {d.name for d in declared_deployments(options.project_dir)}
    supervisor.wait_until(
        "deployments", lambda: wanted <= registered_deployments(ports.prefect_api_url, wanted)
    )
    ready = time.monotonic() - began
    supervisor.write_state(ready_seconds=ready)

    from deployments.status import collect_status, format_table

    report(format_table(collect_status(home)))
    report(
        f"Slipway is up on {home.root} after {ready:.1f} s. Stop it with Ctrl-C or `slipway down`."
    )


def _reconnect_local_git(home: SlipwayHome, ports: Ports, report: Report) -> None:
    """Point every local repository's push hook at this bridge, then resend the spool."""
    from blocks import GitServer
    from deployments.spool import redeliver
    from tasks.git import install_push_hook, platform_push_hook

    server = GitServer.load_default()
    hook = platform_push_hook(home, ports)
    if server.provider == "local" and server.root is not None:
        for repository in sorted(server.root.glob("*.git")):
            install_push_hook(repository, hook)
    result = redeliver(home.spool, hook.bridge_url)
    if result.sent or result.rejected or result.kept:
        report(
            f"spooled pushes: {result.sent} redelivered, {result.rejected} refused "
            f"(kept in {home.spool / 'rejected'}), {result.kept} still waiting"
        )


def _use_embedded_prefect(env: dict[str, str]) -> None:
    """Point this process's own Prefect client at the embedded server."""
    for key, value in env.items():
        if key.startswith(("PREFECT_", "SLIPWAY_")):
            os.environ[key] = value


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _stop_on_signals(supervisor: _Supervisor) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def down(home: SlipwayHome, report: Report = print, *, timeout: float = 40.0) -> bool:
    """Stop the `slipway up` of this home and every process it started.

    Returns:
        Whether anything was running.
    """
    path = home.run / "up.json"
    if not path.exists():
        report(f"Slipway is not running on {home.root}.")
        return False
    state = UpState.model_validate_json(path.read_text())
    lock = UpLock(home)
    if lock.is_held():
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while lock.is_held() and time.monotonic() < deadline:
            time.sleep(0.2)
        if lock.is_held():
            report(f"supervisor {state.supervisor_pid} did not stop in {timeout:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.supervisor_pid, signal.SIGKILL)
    for child in state.children:  # after a crash of the supervisor itself
        _signal_group(child.pid, signal.SIGKILL)
    _kill_marked(state.marker)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    report(f"Slipway stopped on {home.root}.")
    return True


def marked_processes(marker: str) -> list[int]:
    """Pids of live processes started by the supervisor with this marker."""
    needle = f"SLIPWAY_SUPERVISOR={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
        if not zombie and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _kill_marked(marker: str) -> None:
    for pid in marked_processes(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
