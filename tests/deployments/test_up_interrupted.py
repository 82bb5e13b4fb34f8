"""`slipway up` stopped by SIGTERM while it starts: it ends in seconds and leaves nothing running."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx

from deployments.supervisor import marked_processes
from tests.deployments.conftest import Up, alive, processes_of_home

_STOP_WITHIN_SECONDS = 6.0
"""`up` took 10.4 s here before the fix: Prefect's server ignores SIGTERM while its start runs
the migrations of a new database, and `up` gave it the 10 s of a normal stop. Now 3.3 s."""


def _children(up: Up) -> tuple[str, set[int]]:
    """The marker and child pids of `up`'s state file; empty while it has none."""
    try:
        state = json.loads((up.home / "run" / "up.json").read_text())
    except (OSError, ValueError):
        return "", set()
    return state["marker"], {child["pid"] for child in state["children"]}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _wait_until_prefect_migrates(up: Up, timeout: float = 120) -> tuple[str, set[int]]:
    """Wait until Prefect's server creates its database: its start now runs the migrations."""
    database = up.home / "prefect" / "prefect.db"
    seen: set[int] = set()
    marker = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marker, pids = _children(up)
        seen |= pids
        if database.exists():
            return marker, seen
        assert up.process is not None and up.process.poll() is None, "`up` exited"
        time.sleep(0.05)
    raise AssertionError(f"Prefect's server created no database within {timeout:.0f} s")


def test_sigterm_while_prefect_starts_stops_up_in_seconds_and_leaves_no_process(make_up):
    up = make_up()
    up.launch()
    assert up.process is not None
    marker, pids = _wait_until_prefect_migrates(up)
    # On a new home the server runs its migrations now, for seconds: it does not answer yet.
    assert not _answers(f"{up.api_url}/health"), "too late: Prefect already answers"
    assert marker and pids, "`up` wrote no state file before Prefect's database"

    sent = time.monotonic()
    up.process.send_signal(signal.SIGTERM)
    try:
        code = up.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - sent
    up._drain()
    output = "".join(up.output)

    assert code is not None and took <= _STOP_WITHIN_SECONDS, (took, output)
    assert code == 1, output
    assert "SIGTERM" in output and "before every component answered" in output, output
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_of_home(up.home) == []
    assert marked_processes(marker) == []
    assert not (up.home / "run" / "up.json").exists()

    # Prefect's database, killed in its migrations, is whole: the next start is healthy.
    up.start()
    assert _answers(f"{up.api_url}/health")
    up.down()
