"""The run starter of `warm_runs`: preload once, then fork one process per flow run.

Kept apart from `warm_runs` so that the client half, which every flow run's
command imports, stays a few standard modules.

The starter stays single-threaded, so forking it is safe: it refuses to
serve when preloading left a thread running. It is the parent of every run
it starts: it reaps each one and sends its exit status to its client, and
kills the run when the client goes away (the worker killed it).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
from pathlib import Path

from slipway.prefect_patches.warm_runs import _MAX_REQUEST, _at, _Job, _send

__all__ = ["PLATFORM_PACKAGES", "RUN_ENGINE", "main", "preload", "serve", "third_party_imports"]

logger = logging.getLogger(__name__)

PLATFORM_PACKAGES = ("slipway", "blocks", "tasks", "flows", "deployments", "testkit")
"""The platform's own packages: never preloaded, since each run imports its commit's."""

RUN_ENGINE = (
    "slipway.prefect_patches.flow_run_process",  # applies the flow-run patches
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps.core",
    "prefect.runtime",
    # What Prefect imports only once a run is under way (seen with `sys.modules` at a run's end).
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "prefect.utilities.visualization",
    "pydantic.v1",
    "requests",
    "rich._emoji_codes",
    "tarfile",
    "netrc",
    "encodings.idna",
)
"""Prefect's engine and what it imports once a run is under way; the forkserver preloads them too."""


def preload() -> list[str]:
    """Import Prefect's engine and the libraries the platform's modules import.

    The platform's own modules are not imported (their source is only read),
    and what `slipway.prefect_patches` itself pulled in is forgotten again.
    Returns the third-party modules that were imported.
    """
    for name in RUN_ENGINE:
        importlib.import_module(name)
    loaded = []
    for name in sorted(third_party_imports()):
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional library: the run that needs it says so
            logger.debug("not preloading %s: %s", name, e)
        else:
            loaded.append(name)
    return loaded


def third_party_imports() -> set[str]:
    """Modules that the platform's modules import (at their top or in a function), but its own.

    Prefect's server is left out: only the server host's processes use it.
    """
    names: set[str] = set()
    for package in ("slipway", "blocks", "tasks", "flows"):  # what flow runs import
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            for source in Path(root).rglob("*.py"):
                names |= _imports(source)
    return {
        n
        for n in names
        if n.partition(".")[0] not in PLATFORM_PACKAGES and not n.startswith("prefect.server")
    }


def _imports(source: Path) -> set[str]:
    try:
        tree = ast.parse(source.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def serve(path: Path) -> _Job | None:
    """Serve on ``path`` until SIGTERM (returns None); in a forked child, return its job."""
    from slipway.prefect_patches.warm_runs import PATCH

    if not PATCH.applicable():
        raise SystemExit(
            "the run starter does not serve: Prefect's engine changed since warm_runs was "
            "written (see the warning above); flow runs start cold"
        )
    loaded = preload()
    if threading.active_count() > 1:
        raise SystemExit(
            f"the run starter cannot fork safely: preloading started threads "
            f"{[t.name for t in threading.enumerate()]}; set SLIPWAY_RUN_START=spawn"
        )
    gc.collect()
    gc.freeze()  # the forks share these pages: no collection in a run copies them
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _at(path, listener.bind)
    listener.listen(64)
    print(f"run starter ready on {path}: {len(loaded)} libraries preloaded", flush=True)
    return _Loop(listener).run()


class _Loop:
    """The starter's one thread: accept requests, fork, reap, report."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.runs: dict[int, socket.socket] = {}
        self.stopping = False

    def run(self) -> _Job | None:
        signal.set_wakeup_fd(self.wake_w.fileno())
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._note)
        while not self.stopping:
            for key, _events in self.selector.select():
                if key.fileobj is self.listener:
                    job = self._accept()
                    if job is not None:
                        return job  # the child
                elif key.fileobj is self.wake_r:
                    self.wake_r.recv(4096)
                    self._reap()
                else:
                    self._client_gone(key.fileobj)  # type: ignore[arg-type]
        self._stop_runs()
        return None

    def _note(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True

    def _accept(self) -> _Job | None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                raise PermissionError("the client runs as another user")
            data, fds, _flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, 3)
            request = json.loads(data)
            job = _Job(str(request["cwd"]), dict(request["env"]), list(request["args"]), fds)
            if len(fds) != 3:
                raise ValueError(f"expected 3 descriptors, got {len(fds)}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                _send(conn, {"error": str(e)})
            conn.close()
            return None
        pid = os.fork()
        if pid == 0:
            self._become_child(conn)
            return job
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):  # a client gone already: `_client_gone` follows
            _send(conn, {"pid": pid})
        self.runs[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ)
        return None

    def _become_child(self, conn: socket.socket) -> None:
        """Drop everything of the starter: its signals, sockets and other runs."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sock in (self.listener, self.wake_r, self.wake_w, conn, *self.runs.values()):
            sock.close()
        self.selector.close()
        # The preloaded objects stay frozen: a collection in the run never walks (and so
        # never copies) the pages it shares with the starter (the `gc.freeze` recipe).

    def _reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.runs.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(KeyError):  # unless its client went first
                    self.selector.unregister(conn)
                with contextlib.suppress(OSError):
                    _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    def _client_gone(self, conn: socket.socket) -> None:
        """The client closed (killed by its worker): so goes its run."""
        pid = next((p for p, c in self.runs.items() if c is conn), None)
        self.selector.unregister(conn)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _stop_runs(self) -> None:
        for pid in list(self.runs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Preload, then serve until stopped; in a forked child, run the flow run instead."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m slipway.prefect_patches.warm_server SOCKET")
    job = serve(Path(args[0]))
    if job is not None:
        _run(job)


def _run(job: _Job) -> None:
    """In the forked child: become the run's process, then enter Prefect's engine."""
    import runpy

    for target, fd in enumerate(job.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(job.cwd)
    os.environ.clear()
    os.environ.update(job.env)
    sys.argv = [sys.argv[0], *job.args]
    sys.path[0] = job.cwd  # as ``python -m`` would have it

    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging()
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
