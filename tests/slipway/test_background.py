"""`slipway.background`: calls overlapped with the caller's own work, in a copy of its context."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from slipway.background import alongside, in_background, meanwhile

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


def test_calls_handed_off_meanwhile_see_their_handers_context_and_end_with_the_block() -> None:
    seen: list[tuple[str, str]] = []

    def note() -> None:
        time.sleep(0.1)
        seen.append((WHO.get(), threading.current_thread().name))

    with meanwhile(name="report") as hand:
        WHO.set("verify-image")
        hand(note)
        WHO.set("the flow")  # later changes are not the call's
        hand(note)
        assert seen == []  # they run beside the block, not in it
    assert [who for who, _ in seen] == ["verify-image", "the flow"]
    assert all(thread.startswith("report") for _, thread in seen)


def test_a_failed_hand_off_raises_on_leaving_unless_the_block_failed_first() -> None:
    def broken() -> None:
        raise ValueError("no artifact")

    with pytest.raises(ValueError, match="no artifact"), meanwhile(name="report") as hand:
        hand(broken)
    with pytest.raises(KeyError, match="the push"), meanwhile(name="report") as hand:
        hand(broken)
        raise KeyError("the push")
