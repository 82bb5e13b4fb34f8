"""`slipway.background`: calls overlapped with the caller's own work, in a copy of its context."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from slipway.background import alongside, in_background

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_a_call_alongside_sees_the_callers_context_and_is_over_when_the_block_is() -> None:
    WHO.set("the flow")
    ended = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        ended.set()
        return WHO.get()

    with alongside(slow, name="slow") as running:
        assert not running.done()  # it runs beside the block, not before it
    assert ended.is_set() and running.result() == "the flow"


def test_a_failed_call_alongside_raises_where_its_result_is_asked_for() -> None:
    def broken() -> None:
        raise ValueError("no clone")

    with alongside(broken, name="broken") as running:
        pass  # leaving does not raise it
    with pytest.raises(ValueError, match="no clone"):
        running.result()


def test_a_call_in_the_background_runs_in_a_daemon_thread_with_the_callers_context() -> None:
    WHO.set("the task")
    seen = in_background(lambda: (WHO.get(), threading.current_thread().daemon), name="bg")
    assert seen.result(timeout=5) == ("the task", True)
