"""The embedded runner looks for runs as soon as one is scheduled, not at its next poll.

Stands in for an event-driven Prefect runner; no upstream issue asks for it.
Prefect itself pairs a websocket with a polling fallback for cancellation
(PrefectHQ/prefect#19017), which is the shape kept here.

Prefect's `Runner` starts a run only when its poll finds it: every
``query_seconds`` (`deployments.serve.RUN_POLL_SECONDS`), so a push's
run would wait half of that on average, and more under load. `wake_on_scheduled`
subscribes to the server's ``prefect.flow-run.Scheduled`` events and, on
each, asks the runner to query at once (``Runner._get_and_submit_flow_runs``,
the body of one poll).

The poll stays and is what guarantees a run is started: an event lost or
late only costs the wait for the next poll. While the subscription is not
open (before it first connects, and between a failure and its reconnect)
the runner is asked to query every `UNSUBSCRIBED_POLL_SECONDS` instead, so
a websocket that is down costs a run no more than the fast poll it replaced;
the runner's own poll can then be slow and cheap (`deployments.serve`).
A poll and a wake-up running together cannot start a run twice: the
poller skips the runs it is already submitting (``_submit_scheduled_flow_runs``
checks and records each id with no await in between) and the server refuses
a second Pending. Bursts of events (a reconnect's backfill) coalesce into
one query at a time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from slipway.prefect_patches.base import Patch

if TYPE_CHECKING:
    from prefect.events.filters import EventFilter
    from prefect.runner import Runner

__all__ = [
    "PATCH",
    "POLLER_PATCH",
    "SCHEDULED_EVENT",
    "UNSUBSCRIBED_POLL_SECONDS",
    "wake_on_scheduled",
]

logger = logging.getLogger(__name__)

_UPSTREAM = "https://github.com/PrefectHQ/prefect/pull/19017"
PATCH = Patch(
    name="runner-wakeup",
    module="prefect.runner.runner",
    qualname="Runner._get_and_submit_flow_runs",
    upstream=_UPSTREAM,
    fingerprint="16ea1840a3911ffd",
)
POLLER_PATCH = Patch(
    name="runner-wakeup-dedupe",
    module="prefect.runner._scheduled_run_poller",
    qualname="ScheduledRunPoller._submit_scheduled_flow_runs",
    upstream=_UPSTREAM,
    fingerprint="913485112f792a6f",
)

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
"""What Prefect's server emits when a run enters Scheduled, e.g. made by an automation."""

UNSUBSCRIBED_POLL_SECONDS = 0.25
"""How often the runner is asked to query while no event can wake it."""

_BACKOFF_FIRST = 0.5
_BACKOFF_MOST = 30.0


async def wake_on_scheduled(
    runner: Runner,
    *,
    backoff_first: float = _BACKOFF_FIRST,
    unsubscribed_every: float = UNSUBSCRIBED_POLL_SECONDS,
) -> None:
    """Query for runs whenever a run is scheduled, until cancelled; never raises otherwise.

    Returns at once, leaving the runner to its poll, when Prefect's runner is
    not the code this was written for. A failed subscription is retried with
    backoff (``backoff_first`` doubling up to 30 s); until it is open, the
    runner queries every ``unsubscribed_every`` seconds.
    """
    if not (PATCH.applicable() and POLLER_PATCH.applicable()):
        return
    wanted, subscribed = asyncio.Event(), asyncio.Event()
    helpers = [
        asyncio.create_task(_query_when_wanted(runner, wanted)),
        asyncio.create_task(_poll_while_unsubscribed(wanted, subscribed, unsubscribed_every)),
    ]
    try:
        await _subscribe(wanted, subscribed, backoff_first, unsubscribed_every)
    finally:
        for helper in helpers:
            helper.cancel()


async def _subscribe(
    wanted: asyncio.Event,
    subscribed: asyncio.Event,
    backoff_first: float,
    unsubscribed_every: float,
) -> None:
    from prefect.events.clients import get_events_subscriber

    backoff = backoff_first
    while True:
        try:
            async with get_events_subscriber(
                filter=_scheduled_filter(), reconnect_on_clean_close=True
            ) as subscriber:
                logger.debug("waking the runner on %s events", SCHEDULED_EVENT)
                subscribed.set()  # it replays the last minute's events: none is missed
                backoff = backoff_first
                async for _ in subscriber:
                    wanted.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            subscribed.clear()
            logger.warning(
                "the runner's event subscription failed (%s: %s); runs start at a query "
                "every %.2f s until it reconnects in %.1f s",
                type(e).__name__,
                e,
                unsubscribed_every,
                backoff,
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _BACKOFF_MOST)


async def _poll_while_unsubscribed(
    wanted: asyncio.Event, subscribed: asyncio.Event, every: float
) -> None:
    """Ask for a query every ``every`` seconds while no event can wake the runner."""
    while True:
        if not subscribed.is_set():
            wanted.set()
        await asyncio.sleep(every)


async def _query_when_wanted(runner: Runner, wanted: asyncio.Event) -> None:
    """Query whenever asked; a failure is logged once until a query succeeds again.

    While Prefect is down the fallback asks four times a second: the log
    says so once, not at every try.
    """
    failing = False
    while True:
        await wanted.wait()
        wanted.clear()
        if not runner.started:
            continue  # the runner's first poll, when it starts, finds the run
        try:
            await runner._get_and_submit_flow_runs()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not failing:
                logger.warning("the runner's query for scheduled runs failed: %s", e)
            failing = True
        else:
            failing = False


def _scheduled_filter() -> EventFilter:
    """Runs entering Scheduled; the subscriber itself sets the times (a minute back, then on)."""
    from prefect.events.filters import EventFilter, EventNameFilter

    return EventFilter(event=EventNameFilter(name=[SCHEDULED_EVENT]))
