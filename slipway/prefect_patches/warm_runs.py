"""A worker host's flow runs start by forking a warm interpreter, not by starting a cold one.

Stands in for PrefectHQ/prefect#21944: Prefect's process worker starts every
flow run as ``python -m prefect.engine``, a new interpreter that imports
Prefect and the flow's libraries first (about 1.3 s of CPU here, see also
PrefectHQ/prefect#12619), which caps a 2-core worker host at a few dozen
short runs a minute. Two halves:

- **The run starter** (``python -m slipway.prefect_patches.warm_server SOCKET``,
  one per worker host, supervised beside the worker) imports Prefect's
  engine, the flow-run patches and the third-party libraries that the
  platform's modules import at their top, then forks one process per request.
  It never imports the platform's own modules: each run imports those from
  the checkout of its own commit (`slipway.checkouts`).
- **`hand_over`**, called first by the worker's flow-run command
  (`flow_run_process`), sends the starter its environment, working
  directory and standard streams, forwards signals to the run's process and
  exits as that process exits. When no starter answers it returns, and the
  command starts the run cold, as Prefect would.

The forked process is what ``python -m prefect.engine`` would have been: a
process of its own, with this run's environment (Prefect's settings re-read
from it, as Prefect's own `run_flow_in_subprocess` does), streams and working
directory, entering Prefect's engine through its ``__main__`` block. A client
that dies (the worker killed it) takes its run down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "STARTER_ENV", "hand_over"]

PATCH = Patch(
    name="warm-runs",
    module="prefect.engine",
    qualname="__main__",
    upstream="https://github.com/PrefectHQ/prefect/issues/21944",
    fingerprint="5e2db19dd734383b",
)

STARTER_ENV = "SLIPWAY_RUN_STARTER"
"""The run starter's socket; set in a worker host's environment by `slipway up`."""

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_MAX_REQUEST = 1 << 20


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _receive(sock: socket.socket) -> dict[str, Any] | None:
    data = sock.recv(_MAX_REQUEST)
    return json.loads(data) if data else None


def _at(path: Path, action: Callable[[str], None]) -> None:
    """``connect`` or ``bind`` at ``path`` by way of its directory's descriptor.

    A home's path may exceed the 108 bytes an AF_UNIX address holds.
    """
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        action(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        _at(path, sock.connect)
    except OSError:
        sock.close()
        raise
    return sock


# -- the client: the worker's flow-run command ---------------------------------


def hand_over() -> None:
    """Run this flow run in the host's run starter and exit as it does; return if none answers."""
    path = os.environ.get(STARTER_ENV)
    if not path or os.environ.get("SLIPWAY_RUN_START", "").strip().lower() == "spawn":
        return
    try:
        sock = _connect(Path(path))
        _send(
            sock, {"cwd": str(Path.cwd()), "env": dict(os.environ), "args": sys.argv[1:]}, _stdio()
        )
        started = _receive(sock)
    except OSError as e:
        print(f"slipway: no warm run starter ({e}); starting cold", file=sys.stderr, flush=True)
        return
    if not started or "pid" not in started:
        print(f"slipway: the run starter refused: {started}; starting cold", file=sys.stderr)
        return
    pid = int(started["pid"])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    ended = _receive(sock)
    if ended is None:  # the starter went away; the run carries on until it ends
        while _alive(pid):
            time.sleep(0.5)
        print("slipway: the run starter stopped during this flow run", file=sys.stderr)
        sys.exit(1)
    code = int(ended["exit"])
    if code < 0:  # the run died of a signal: so does this process, for the worker to see
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs: a zombie has ended, whoever is left to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stdio() -> list[int]:
    """Descriptors 0-2, with /dev/null standing in for any that is closed."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


# -- the server: one per worker host -------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One flow run to start, as its client asked."""

    cwd: str
    env: dict[str, str]
    args: list[str]
    fds: list[int]
