from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prefect.flow_engine
import pytest

import blocks  # noqa: F401  (importing the blocks applies the fix)
from slipway import heartbeats

REPO = Path(__file__).resolve().parents[2]


@dataclass
class _State:
    final: bool

    def is_final(self) -> bool:
        return self.final


@dataclass
class _Run:
    state: _State


@dataclass
class _Engine:
    """The part of Prefect's flow run engine that the heartbeat context uses."""

    heartbeat_seconds: int | None = 30
    flow_run: _Run = field(default_factory=lambda: _Run(_State(final=False)))
    beats: list[float] = field(default_factory=list)
    logger: Any = field(default=None)
    emitted: threading.Event = field(default_factory=threading.Event)

    def _build_heartbeat_event_template(self) -> tuple[str, list[str]]:
        return "resource", []

    def _emit_flow_run_heartbeat(self, resource: str, related: list[str]) -> None:
        self.beats.append(time.monotonic())
        self.emitted.set()


def test_importing_the_blocks_puts_the_fix_in_prefects_engine():
    assert prefect.flow_engine._send_heartbeats is heartbeats._send_heartbeats


@pytest.mark.parametrize(
    "entrypoint",
    ["flows/security_scan.py:security_scan", "flows/platform_check.py:check_platform"],
)
def test_a_flow_loaded_by_path_as_a_pool_worker_does_has_the_fix(entrypoint: str):
    """A worker loads ``flows/<file>.py`` by path, so the `flows` package is never imported."""
    probe = (
        "import sys, prefect.flow_engine as engine\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        "load_flow_from_entrypoint(sys.argv[1])\n"
        "print(engine._send_heartbeats.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, entrypoint],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "slipway.heartbeats", done.stderr[-2000:]


def test_a_run_sends_its_first_heartbeat_and_ends_without_waiting_out_a_sleep():
    engine = _Engine()

    with heartbeats._send_heartbeats(engine):
        assert engine.emitted.wait(5)
        ended = time.monotonic()
    left = time.monotonic() - ended

    assert len(engine.beats) == 1
    assert left < 0.2, f"leaving the context took {left:.2f} s (Prefect 3.8's own takes up to 1 s)"


def test_no_heartbeat_once_the_run_is_final_and_none_when_disabled():
    final = _Engine(flow_run=_Run(_State(final=True)))
    disabled = _Engine(heartbeat_seconds=None)

    with heartbeats._send_heartbeats(final), heartbeats._send_heartbeats(disabled):
        time.sleep(0.2)

    assert final.beats == [] and disabled.beats == []


@pytest.mark.parametrize("join_on_exit", [True, False])
def test_the_thread_stops_when_the_run_ends(join_on_exit: bool):
    engine = _Engine()
    before = set(threading.enumerate())

    with heartbeats._send_heartbeats(engine, join_on_exit=join_on_exit):
        assert engine.emitted.wait(5)
        (beating,) = set(threading.enumerate()) - before
    beating.join(timeout=1)

    assert not beating.is_alive()
