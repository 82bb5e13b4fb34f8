"""`slipway up` and `slipway down`: start, watch and stop the platform on this host.

Order matters: Prefect first (everything else talks to it), then the block
types and default documents, then the processes that read those blocks (the
deployment runner and the docs portal). A child that dies is restarted with
a back-off; one that keeps dying is left down and shown as such by `status`.

The role decides what "the platform on this host" is (see `Role`): the
embedded default serves the flows in-process; a server host applies them to
the work pool instead, and a worker host runs only Prefect's worker against a
server elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # nosec B404 - long-running children; argv lists only
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NoReturn

from deployments.components import (
    Database,
    ProcessSpec,
    Role,
    WorkerSettings,
    child_env,
    default_worker_name,
)
from deployments.pool import CrashDetection, PlatformCode
from deployments.state import ChildRecord, UpLock, UpState, read_state, write_state
from deployments.warm_start import ChildProcess, can_fork, fork
from slipway.api_auth import ApiAuth
from slipway.errors import ComponentError
from slipway.home import Ports, SlipwayHome

__all__ = ["Report", "Stopped", "Supervisor", "UpOptions", "down", "marked_processes"]

Report = Callable[[str], None]

_MAX_RESTARTS = 5
_STOP_GRACE_SECONDS = 10.0
"""Seconds each tier of children gets between SIGTERM and SIGKILL."""
_ABORT_GRACE_SECONDS = 3.0
"""The same when `up` stops before it is ready. A child still starting has no work to hand
over, and Prefect's server ignores SIGTERM until its own start ends (uvicorn only notes the
signal during the app's start-up, Kludex/uvicorn#2751): seconds of migrations on a new home."""


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
    role: Role = "embedded"
    """What runs on this host."""
    database: Database | None = None
    """The Prefect server's database; None for SQLite under the home."""
    worker: WorkerSettings | None = None
    """The worker of roles ``worker`` and ``all``; its ``api_url`` names the server."""
    code: PlatformCode | None = None
    """Roles ``server`` and ``all``: the commit that workers clone."""
    crash: CrashDetection = field(default_factory=CrashDetection)
    """Roles ``server`` and ``all``: how runs on dead hosts are marked Crashed."""
    public_url: str | None = None
    """Where users and workers reach this server through a proxy; None for loopback only."""

    @property
    def api_url(self) -> str:
        """The Prefect API that this host's processes talk to."""
        if self.role == "worker" and self.worker is not None:
            return self.worker.api_url
        return self.ports.prefect_api_url


@dataclass
class _Child:
    spec: ProcessSpec
    process: ChildProcess
    log: IO[bytes]
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class Stopped(Exception):
    """Raised inside waits when a stop was requested."""


class Supervisor:
    """The children of one `slipway up`, their logs, restarts and the state file."""

    def __init__(self, options: UpOptions, marker: str, report: Report, auth: ApiAuth) -> None:
        self.options = options
        self.marker = marker
        self.report = report
        self.auth = auth
        """What this host's processes authenticate to Prefect with."""
        self.env = child_env(
            options.home, options.ports, marker, auth=auth, api_url=options.api_url
        )
        self.children: dict[str, _Child] = {}
        self.stopped_by: str | None = None
        """What asked for the stop (``SIGTERM``, ``SIGINT``), for the line `up` ends with."""
        self.ready = False
        """Whether every component answered; a stop before that aborts a start."""

    # -- processes ---------------------------------------------------------
    def start(self, spec: ProcessSpec) -> None:
        """Start one component in its own process group, appending to its log.

        A child with modules to preload is forked from this process while it
        has one thread (`deployments.warm_start`), after `up` imported them.
        A forked child lacks the marker that `down` finds the others by, so
        it goes into the state file at once: `down` finds it there even if
        `up` is killed before the next change.

        Raises:
            Stopped: a stop was requested: nothing starts after that.
        """
        self.check_stopping()
        log = (self.options.home.logs / f"{spec.name}.log").open("ab")
        warm = bool(spec.preload) and can_fork(spec.argv)
        how = "forked from `up`" if warm else "cold"
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {spec.name} ({how})\n".encode())
        log.flush()
        env = self.env | dict(spec.env)
        env.update({k: v.get_secret_value() for k, v in spec.secret_env.items()})
        # Not the project: `-m deployments...` would import from there, and
        # --project may be another checkout than the one Slipway runs from.
        cwd = spec.cwd or self.options.home.root
        process: ChildProcess
        if warm:
            process = fork(spec.argv, env, cwd, log)
        else:
            process = subprocess.Popen(  # nosec B603 - fixed argv
                spec.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stopped as a whole
            )
        previous = self.children.get(spec.name)
        restarts = previous.restarts if previous else []
        self.children[spec.name] = _Child(spec, process, log, restarts)
        if warm:
            self.write_state()

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a component's log, for error messages."""
        path = self.options.home.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (`request_stop`)."""
        return self.stopped_by is not None

    def check_stopping(self) -> None:
        """Leave a start-up wait when Ctrl-C or SIGTERM arrived."""
        if self.stopping:
            raise Stopped

    def request_stop(self, why: str) -> None:
        """Ask every wait, and `watch`, to end; from the signal handlers of `up`."""
        self.stopped_by = self.stopped_by or why

    def wait_until(self, name: str, ready: Callable[[], bool]) -> None:
        """Wait for ``ready``; fail with the log tail if ``name`` exits or times out."""
        self.wait_all({name: ready})

    def wait_all(
        self,
        waits: Mapping[str, Callable[[], bool]],
        on_ready: Callable[[str], object] = lambda _: None,
        *,
        joining: Callable[[], Mapping[str, Callable[[], bool]] | None] | None = None,
    ) -> None:
        """Wait until every component of ``waits`` is ready, probing them side by side.

        ``on_ready`` hears each name as it becomes ready. ``joining``, asked
        before each round, gives the components started since, to wait for
        too, or None once no more will come: the wait ends only then.

        Raises:
            ComponentError: one exited, or was not ready within the start-up timeout;
                with its log tail.
        """
        deadline = time.monotonic() + self.options.startup_timeout
        pending = dict(waits)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe") as probes:
            while True:
                more = joining() if joining is not None else None
                pending.update(more or {})
                ready = dict(
                    zip(pending, probes.map(lambda probe: probe(), pending.values()), strict=True)
                )
                for name, answered in ready.items():
                    if answered:
                        del pending[name]
                        on_ready(name)
                    elif (code := self.children[name].process.poll()) is not None:
                        raise ComponentError(
                            f"{name} exited with code {code} while starting:\n{self.log_tail(name)}",
                            hint=f"see {self.options.home.logs / (name + '.log')}",
                        )
                if not pending and (joining is None or more is None):
                    return
                self.check_stopping()
                if time.monotonic() > deadline:
                    self._not_ready(next(iter(pending), None))
                time.sleep(0.1)

    def _not_ready(self, name: str | None) -> NoReturn:
        if name is None:
            raise ComponentError(
                f"the set-up steps did not end within {self.options.startup_timeout:.0f} s",
                hint=f"see {self.options.home.logs / 'startup.log'} for the last step that ended",
            )
        raise ComponentError(
            f"{name} was not healthy within {self.options.startup_timeout:.0f} s:\n"
            f"{self.log_tail(name)}",
            hint=f"see {self.options.home.logs / (name + '.log')}",
        )

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
        """Stop the clients of Prefect and the registry first, then those two.

        The runner pauses its deployments through Prefect's API when it gets
        SIGTERM; with Prefect stopping at the same moment, it retried against
        a dead server until the grace period ran out (15 s of every `down`).
        Each tier gets SIGTERM, then SIGKILL for what is left after the grace;
        each is reported, so a child that has to be killed is seen. The grace
        is shorter when `up` was not ready yet (`_ABORT_GRACE_SECONDS`).
        """
        children = list(self.children.values())
        grace = _STOP_GRACE_SECONDS if self.ready else _ABORT_GRACE_SECONDS
        began = time.monotonic()
        for tier in (
            [c for c in children if not c.spec.stop_last],
            [c for c in children if c.spec.stop_last],
        ):
            for child in reversed(tier):
                _signal_group(child.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in tier:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                if child.process.poll() is None:
                    self.report(
                        f"{child.spec.name} did not stop within {grace:.0f} s of SIGTERM; killed it"
                    )
                _signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait()
                child.log.close()
            if tier:
                names = ", ".join(c.spec.name for c in tier)
                self.report(f"stopped {names} ({time.monotonic() - began:.1f} s)")
        _kill_marked(self.marker)

    # -- state -------------------------------------------------------------
    def _worker_name(self) -> str | None:
        worker = self.options.worker
        if worker is None:
            return None
        return worker.name or default_worker_name(self.options.home)

    def write_state(
        self, ready_seconds: float | None = None, started: datetime | None = None
    ) -> None:
        """Rewrite the state file from the children as they are now."""
        previous = read_state(self.options.home)
        write_state(
            self.options.home,
            UpState(
                supervisor_pid=os.getpid(),
                marker=self.marker,
                started_at=started or (previous.started_at if previous else datetime.now(UTC)),
                # A new start (``started``) is not ready yet, whatever a crashed run left behind.
                ready_seconds=ready_seconds
                if ready_seconds is not None
                else (previous.ready_seconds if previous and started is None else None),
                ports=self.options.ports.as_dict(),
                project_dir=str(self.options.project_dir),
                role=self.options.role,
                database=self.options.database.redacted if self.options.database else None,
                api_url=self.options.api_url,
                pool=self.options.worker.pool if self.options.worker else None,
                worker_name=self._worker_name(),
                public_url=self.options.public_url,
                children=[
                    ChildRecord(name=c.spec.name, pid=c.process.pid, url=c.spec.url)
                    for c in self.children.values()
                ],
            ),
        )


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
