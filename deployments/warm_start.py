"""The Python children of `slipway up`, forked from its own interpreter once that imported Prefect.

Each of the portal, the bridge and the monitor imports Prefect, pydantic and
the platform's blocks before it can wait at the gate: about 1.5 s of CPU
each, on 2 cores that Prefect's server needs for its own start. `up` imports
the blocks anyway, so it imports what those children import too (each
spec's `ProcessSpec.preload`), once, and forks each child from there, the
way Prefect's forkserver and `slipway.prefect_patches.warm_server` start
runs. A forked child is what ``python -m <module>`` would have run: its own
session, log, working directory, environment and Prefect settings, then its
module run as ``__main__``.

Forking is only safe while `up` has a single thread: `can_fork` says so, and
`up` forks before it calls Prefect (whose clients start threads). A child
restarted later, when `up` runs threads, starts cold with `subprocess`.

A forked child's ``/proc/<pid>/environ`` is `up`'s own, without the marker;
`up` and `slipway down` stop it by its process group, as every child.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import os
import runpy
import subprocess  # nosec B404 - TimeoutExpired only, as `Popen.wait` raises it
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Protocol

__all__ = ["ChildProcess", "Forked", "can_fork", "fork", "preload"]


class ChildProcess(Protocol):
    """What `up` needs of a child process: `subprocess.Popen` and `Forked` both are one."""

    @property
    def pid(self) -> int:
        """The process id, which is also its process group's."""

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; `subprocess.TimeoutExpired` after ``timeout`` seconds."""


class Forked:
    """A forked child of this process, with `subprocess.Popen`'s exit codes (-N: signal N)."""

    def __init__(self, pid: int, argv: tuple[str, ...]) -> None:
        self._pid = pid
        self.argv = argv
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        """The process id, which is also its process group's."""
        return self._pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        if self.returncode is None:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid != 0:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit.

        Raises:
            subprocess.TimeoutExpired: it still ran after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(list(self.argv), timeout or 0.0)
            time.sleep(0.02)
        return code


def preload(
    modules: Iterable[str], *, check: Callable[[], object] = lambda: None
) -> dict[str, str]:
    """Import ``modules`` here, then freeze what is alive, so forks share it and never collect it.

    No garbage is left for a child's collector: it would close descriptors
    the child has reused. A module that fails to import is not `up`'s
    failure: the child that needs it starts cold, and fails on its own, in
    its own log, as it did before `up` forked. ``check`` runs before each
    import: what it raises (`up`'s stop request) ends the preload, as the
    imports take seconds of CPU.

    Returns:
        Each module that failed to import, with its error.
    """
    failed: dict[str, str] = {}
    for name in modules:
        check()
        try:
            importlib.import_module(name)
        except Exception as e:  # the child's own error: the child reports it
            failed[name] = f"{type(e).__name__}: {e}"
    gc.collect()
    gc.freeze()
    return failed


def can_fork(argv: tuple[str, ...]) -> bool:
    """Whether ``argv`` is ``python -m <module> ...`` of this interpreter, and forking is safe now."""
    runs_module = len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m"
    return runs_module and threading.active_count() == 1


def fork(argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, log: IO[bytes]) -> Forked:
    """Start ``python -m <module> ...`` (``argv``) as a fork of this process, logging to ``log``."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else the child writes what this process had buffered once more
    pid = os.fork()
    if pid != 0:
        return Forked(pid, argv)
    code = 1
    try:
        code = _become(argv, env, cwd, log)
    except BaseException:  # the child's own failure: in its log, as a cold start has it
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # what the interpreter's exit runs, then no `up` code again
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become(argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, log: IO[bytes]) -> int:
    """In the child: leave `up`'s session, signals and descriptors, then run the module."""
    import signal

    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # `up`'s lock and the other children's logs
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)  # a log line by line, as PYTHONUNBUFFERED
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    module, args = argv[2], list(argv[3:])
    sys.argv = [module, *args]
    sys.path[0] = str(cwd)  # as ``python -m`` has it
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()  # the child's environment, not `up`'s
    setup_logging()
    # Run as __main__ only, as ``python -m`` does: the preloaded copy would be a second
    # module object (runpy warns of it in every forked child's log).
    sys.modules.pop(module, None)
    sys.modules.pop(f"{module}.__main__", None)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0
