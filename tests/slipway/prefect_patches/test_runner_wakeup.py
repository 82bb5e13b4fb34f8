"""A served run starts when it is scheduled, not at the runner's next poll; the poll still backs it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from prefect import flow

from slipway.prefect_patches import runner_wakeup


@flow
def wakeup_probe() -> None:
    """A flow for the runner to serve; its runs need only leave Scheduled."""


async def _seconds_until_the_run_leaves_scheduled(query_seconds: float) -> float:
    """Serve a deployment polled every ``query_seconds``, schedule a run, time its Pending."""
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from deployments.serve import _serve_woken

    runner = Runner(query_seconds=query_seconds)
    deployment_id = await runner.aadd_flow(wakeup_probe, name=f"wakeup-{uuid.uuid4().hex[:8]}")
    serving = asyncio.create_task(_serve_woken(runner))
    try:
        while not runner.started or not hasattr(runner, "_scheduled_run_poller"):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the first poll is done, and the subscription is open
        async with get_client() as client:
            created = time.monotonic()
            run = await client.create_flow_run_from_deployment(deployment_id)
            while True:
                found = await client.read_flow_run(run.id)
                assert found.state is not None
                if not found.state.is_scheduled():
                    return time.monotonic() - created
                assert time.monotonic() - created < 60, "the run never left Scheduled"
                await asyncio.sleep(0.05)
    finally:
        await runner.astop()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


def test_a_scheduled_run_starts_before_the_next_poll_would_have(prefect_server: str):
    waited = asyncio.run(_seconds_until_the_run_leaves_scheduled(query_seconds=30))

    assert waited < 10, f"the run waited {waited:.2f} s, as for the 30 s poll"


def test_with_the_subscription_failing_the_poll_still_starts_runs(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import prefect.events.clients

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("the events websocket is down")

    monkeypatch.setattr(prefect.events.clients, "get_events_subscriber", unreachable)

    waited = asyncio.run(_seconds_until_the_run_leaves_scheduled(query_seconds=1))

    assert waited < 10
    assert "the runner's event subscription failed" in caplog.text


def test_while_the_subscription_is_down_runs_start_long_before_a_slow_poll(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
):
    import prefect.events.clients

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("the events websocket is down")

    monkeypatch.setattr(prefect.events.clients, "get_events_subscriber", unreachable)

    waited = asyncio.run(_seconds_until_the_run_leaves_scheduled(query_seconds=30))

    assert waited < 10, f"the run waited {waited:.2f} s, as for the 30 s poll"


def test_the_wakeup_leaves_the_runner_to_its_poll_when_prefect_changed(
    monkeypatch: pytest.MonkeyPatch,
):
    from dataclasses import replace

    from prefect.runner import Runner

    stale = replace(runner_wakeup.PATCH, fingerprint="0" * 16)
    monkeypatch.setattr(runner_wakeup, "PATCH", stale)

    asyncio.run(asyncio.wait_for(runner_wakeup.wake_on_scheduled(Runner()), timeout=5))


def test_a_query_failing_again_and_again_is_logged_once_until_one_succeeds(
    caplog: pytest.LogCaptureFixture,
):
    class Flaky:
        started = True

        def __init__(self) -> None:
            self.answers = [
                OSError("down"),
                OSError("down"),
                OSError("down"),
                None,
                OSError("again"),
            ]

        async def _get_and_submit_flow_runs(self) -> None:
            answer = self.answers.pop(0)
            if answer is not None:
                raise answer

    async def ask_five_times() -> None:
        wanted = asyncio.Event()
        querying = asyncio.create_task(runner_wakeup._query_when_wanted(Flaky(), wanted))  # type: ignore[arg-type]
        for _ in range(5):
            wanted.set()
            await asyncio.sleep(0.05)
        querying.cancel()

    asyncio.run(ask_five_times())

    failures = [r for r in caplog.records if "query for scheduled runs failed" in r.message]
    assert [r.getMessage().rsplit(": ", 1)[1] for r in failures] == ["down", "again"]
