"""Waiting for a started container to answer healthy, and saying why it did not.

A release's new container is polled at ``/healthz`` (closely at first, when
a healthy start is likely); one that exits or restarts, or does not answer
in time, fails the release with how it ended and the tail of its log, which
is also attached to the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from slipway.errors import DeployError
from slipway.http import shared_client
from tasks.release.contract import healthy, reported_version

if TYPE_CHECKING:
    from docker.models.containers import Container

__all__ = ["wait_healthy"]

_POLL_FAST, _POLL_SLOW = 0.05, 0.2
"""Seconds between health probes: in the first `_POLL_FAST_SECONDS`, then after."""
_POLL_FAST_SECONDS = 3.0
_PROBE_SECONDS = 2.0
"""How long one probe may take."""
_READ_SECONDS = 0.25
"""How often the state of a container that Docker does not restart is read while it starts."""


def wait_healthy(
    container: Container,
    url: str,
    *,
    sha: str,
    timeout: float,
    abandoned: Callable[[], bool] | None = None,
) -> None:
    """Poll ``url`` until it answers 200 (and, when it reports one, the right version).

    The container's state is read after the answer that passes (a live
    container that restarted meanwhile fails) and, while none passes, at
    each probe of a container that Docker restarts (its exit is seen only
    while it lasts), else every `_READ_SECONDS`: a read is an inspection by
    the engine, which shares the cores with what runs meanwhile (a
    candidate's start beside the tests).

    ``abandoned`` is asked before each probe: once it says yes, nobody
    waits for the answer any more (a trial whose image failed its tests).

    Raises:
        DeployError: The container exited (saying with which code, after how
            long), or ``timeout`` passed (with the last answer); either way it
            carries the tail of the container's log. Or it was ``abandoned``.
    """
    began = time.monotonic()
    deadline = began + timeout
    fast_until = began + _POLL_FAST_SECONDS
    policy = (container.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
    every = 0.0 if policy.get("Name") not in (None, "", "no") else _READ_SECONDS
    read_at = began - every
    while True:
        if abandoned is not None and abandoned():
            raise DeployError(f"{container.name} was abandoned before it answered at {url}")
        passed, last = _probe(url, sha)
        if passed or time.monotonic() - read_at >= every:
            _raise_if_ended(container, began, url)
            read_at = time.monotonic()
            if passed:
                return
        if time.monotonic() > deadline:
            break
        # Close polling while a healthy start is likely: during the switch, every
        # moment between "up" and "seen up" is a moment the port refuses requests.
        time.sleep(_POLL_FAST if time.monotonic() < fast_until else _POLL_SLOW)
    raise DeployError(
        f"{container.name} did not become healthy within {timeout:.0f} s at {url}: {last}"
        + _log_tail(container, why=last),
        hint="fix /healthz or the start-up error above, then push again; the previous version keeps serving",
    )


def _probe(url: str, sha: str) -> tuple[bool, str]:
    """Whether ``url`` answers healthy with ``sha``; else what it answered."""
    try:
        response = shared_client(trust_env=False).get(url, timeout=_PROBE_SECONDS)
    except httpx.HTTPError as e:
        return False, f"{type(e).__name__}: {e}"
    if healthy(response, sha):
        return True, ""
    version = reported_version(response)
    if version not in (None, sha):
        return False, f"{url} reports version {version}, not {sha[:12]}"
    return False, f"HTTP {response.status_code}: {response.text[:300]}"


def _raise_if_ended(container: Container, began: float, url: str) -> None:
    """Raise when ``container`` is gone, exited or restarted (a restart is an exit too)."""
    from docker.errors import NotFound

    try:
        container.reload()
    except NotFound as e:
        raise DeployError(f"{container.name} disappeared while starting") from e
    if container.status in ("exited", "dead", "restarting") or container.attrs.get("RestartCount"):
        exited = _exited(container, time.monotonic() - began, url)
        raise DeployError(
            exited + _log_tail(container, why=exited),
            hint="fix the start-up error its log shows, then push again; "
            "the previous version keeps serving",
        )


def _exited(container: Container, waited: float, url: str) -> str:
    """``the container ... exited with code 1 after 0.4 s``, timed by Docker where it can be."""
    state = container.attrs.get("State") or {}
    ran = _seconds_between(state.get("StartedAt"), state.get("FinishedAt"))
    seconds = ran if ran is not None else waited
    restarts = container.attrs.get("RestartCount") or 0
    again = f" (restarted {restarts}x by Docker, exiting each time)" if restarts else ""
    return (
        f"the container {container.name} exited with code {state.get('ExitCode')} after "
        f"{seconds:.{2 if seconds < 10 else 0}f} s, before {url} answered{again}"
    )


def _seconds_between(started: object, finished: object) -> float | None:
    """Seconds between two of Docker's timestamps (nanosecond RFC 3339), or None."""
    try:  # Python 3.11 reads the Z and drops digits past the microsecond
        times = [datetime.fromisoformat(str(t)) for t in (started, finished)]
    except ValueError:
        return None
    seconds = (times[1] - times[0]).total_seconds()
    return seconds if seconds >= 0 else None


def _log_tail(container: Container, *, why: str, lines: int = 20) -> str:
    """The last lines of the candidate's log for the error, also attached to the run as an artifact."""
    # Imported here: tasks.monitoring.logs reads the release contract, and the
    # release package must be importable before it.
    from tasks.monitoring.logs import attach_log_tail

    logs = "\n".join(attach_log_tail(container, why=why).splitlines()[-lines:])
    return f"\ncontainer log (last {lines} lines):\n{logs}"
