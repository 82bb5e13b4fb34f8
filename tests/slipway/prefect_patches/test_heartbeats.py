from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slipway.prefect_patches import heartbeats
from testkit.fresh import printed_by

REPO = Path(__file__).resolve().parents[3]


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


def _heartbeats_module_after(code: str) -> str:
    """Which module's `_send_heartbeats` Prefect's engine holds after ``code`` ran in a new process."""
    probe = (
        f"{code}\nimport prefect.flow_engine as engine\nprint(engine._send_heartbeats.__module__)\n"
    )
    return printed_by(probe)[-1]


def test_importing_the_blocks_or_a_flow_patches_nothing():
    assert _heartbeats_module_after("import blocks, flows.delivery") == "prefect.flow_engine"


def test_the_flow_run_entry_point_puts_the_fix_in_prefects_engine():
    module = _heartbeats_module_after("import slipway.prefect_patches.flow_run_process")
    assert module == "slipway.prefect_patches.heartbeats"


def test_a_pool_workers_flow_run_command_goes_through_the_entry_point():
    from deployments.pool import FLOW_RUN_COMMAND

    assert FLOW_RUN_COMMAND.endswith("-m slipway.prefect_patches.flow_run_process")


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
