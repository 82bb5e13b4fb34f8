"""Moves accepted pushes from the intake queue into Prefect, until Prefect has their runs.

One loop in the bridge's process, over the queue (`deployments.intake`) and
Prefect's API (`deployments.prefect_api`). Each step:

1. **Coalesces.** Per service and branch, one push is in flight at a time.
   Pushes that arrive meanwhile wait; when it is done, the newest of them goes
   and the others are superseded by it. A burst therefore starts runs at the
   pace Prefect creates them, per branch, not one set per push.
2. **Posts** the events of pushes in flight, in one request, then records the
   runs their triggers will create (`PrefectApi.expected_runs`, from the
   automations it reads while idle); a step that fails between the two posts
   the events again, which Prefect takes once.
3. **Confirms**, `confirm_after` its post at the earliest: a push is
   delivered once each of those runs exists. Until then its event is posted
   again now and then (`repost_after`, doubling). Prefect drops an event id
   it has seen, and after a restart, when it has forgotten, the run keys
   (`slipway.prefect_patches.run_idempotency`) make the resend start nothing
   twice. A push whose runs never appear within `give_up_after` is marked
   failed and recorded as such, so one broken trigger does not hold its
   branch forever.
4. **Records** superseded pushes in Prefect, so none is dropped silently.

Prefect being down only makes steps fail; the loop logs it and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import httpx

from deployments.bridge_metrics import BridgeMetrics
from deployments.intake import InFlight, IntakeQueue, State
from deployments.prefect_api import ExpectedRun, PrefectApi

__all__ = ["Forwarder", "ForwarderSettings"]

logger = logging.getLogger(__name__)

_RECORD_CHUNK = 200


@dataclass(frozen=True)
class ForwarderSettings:
    """How the forwarder paces itself."""

    tick: float = 0.25
    """Seconds between two steps when nothing new arrives."""
    min_gap: float = 0.05
    """Seconds at least between two steps, however many pushes arrive."""
    confirm_after: float = 1.0
    """Seconds after a push's first post before its runs are looked for.

    Meanwhile its trigger creates the run and the run starts, each step a
    request to the same Prefect server: a look then finds nothing yet. One
    step after the post, it took 49 ms of the server just as the runner set
    the run Pending and Submitting (51 and 93 ms) and forked it.
    """
    repost_after: float = 20.0
    """Seconds to wait for a push's runs before posting its event again (doubling, up to 5 min)."""
    give_up_after: float = 900.0
    """Seconds after its first post before a push whose runs never came counts as failed."""
    prune_every: float = 600.0
    """Seconds between two prunes of deliveries past their retention."""


class Forwarder:
    """The loop; `run` until cancelled, `wake` when a push was accepted."""

    def __init__(
        self,
        queue: IntakeQueue,
        prefect: PrefectApi,
        metrics: BridgeMetrics,
        *,
        settings: ForwarderSettings | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._queue = queue
        self._prefect = prefect
        self._metrics = metrics
        self._settings = settings or ForwarderSettings()
        self._ready = ready
        self._woken = asyncio.Event()
        self._dirty = True
        self._pruned = float("-inf")
        self._complained: dict[str, float] = {}
        self._unreachable = False
        """Prefect did not answer: it may have restarted and forgotten events it had taken."""

    def wake(self) -> None:
        """A push was queued: coalesce and send soon."""
        self._dirty = True
        self._woken.set()

    async def run(self) -> None:
        """Step until cancelled; a failed step is logged and the next one tries again."""
        settings = self._settings
        while True:
            began = time.monotonic()
            try:
                if not self._ready():
                    self._complain("ready", "waiting for `slipway up` to register the deployments")
                elif not await self._queue.lead():
                    self._complain("lead", "another bridge forwards from this queue; standing by")
                else:
                    await self.step(time.time())
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._unreachable |= isinstance(e, httpx.TransportError | httpx.HTTPStatusError)
                self._metrics.forward_errors.inc()
                self._complain(type(e).__name__, f"forwarding failed, will retry: {e!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=settings.tick)
            self._woken.clear()
            await asyncio.sleep(max(0.0, settings.min_gap - (time.monotonic() - began)))

    async def step(self, now: float) -> None:
        """One pass: coalesce, post, confirm, record, and now and then prune."""
        if self._dirty:
            self._dirty = False
            _sent, superseded = await self._queue.coalesce(now)
            self._metrics.superseded.inc(superseded)
        flights = await self._queue.in_flight()
        if not flights:
            # Read while idle, so that a push's step posts it without this read beside
            # the run its trigger is starting (Prefect's server serves both). A failure
            # is no error yet: the post reads them again.
            with contextlib.suppress(httpx.HTTPError):
                await self._prefect.refresh_automations()
        await self._post_due(flights, now)
        await self._confirm(await self._queue.in_flight(), now)
        await self._record_superseded()
        if now - self._pruned > self._settings.prune_every:
            self._pruned = now
            forgotten = await self._queue.prune(now)
            if forgotten:
                logger.info("forgot %d deliveries past their retention", forgotten)

    async def _post_due(self, flights: list[InFlight], now: float) -> None:
        # After an outage every event in flight goes again at once: a restarted
        # Prefect lost those it held in memory, and the run keys make a resend safe.
        resend, self._unreachable = self._unreachable, False
        due = [f for f in flights if resend or self._due(f, now)]
        if not due:
            return
        try:
            # Posted first: what the triggers will start (an automations read when its
            # cache is stale) is only needed to confirm the runs, not to create them.
            await self._prefect.post_events([f.event for f in due])
            expected = {f.seq: await self._prefect.expected_runs(f.event) for f in due}
        except BaseException:
            self._unreachable |= resend
            raise
        for f in due:
            if f.attempts == 0:
                self._metrics.forwarded.inc()
            else:
                logger.info("posted the event of %s %s at %s again", f.service, f.ref, f.after[:12])
            runs = _expect(f, expected[f.seq], now, restart_clock=resend)
            await self._queue.posted(f.seq, at=now, expected=runs)

    def _due(self, flight: InFlight, now: float) -> bool:
        if flight.posted_at is None:
            return True
        wait = min(self._settings.repost_after * 2.0 ** max(0, flight.attempts - 1), 300.0)
        return now - flight.posted_at >= wait

    async def _confirm(self, flights: list[InFlight], now: float) -> None:
        # Not while its runs are being created and started (`confirm_after`); a repost's
        # runs are most likely there already.
        wait = self._settings.confirm_after
        posted = [
            f
            for f in flights
            if f.posted_at is not None and (f.attempts > 1 or now - f.posted_at >= wait)
        ]
        keys = [k for f in posted for k in f.expected.get("keys", {})]
        found = await self._prefect.found_runs(keys) if keys else {}
        for f in posted:
            runs = [found[k] for k in f.expected.get("keys", {}) if k in found]
            missing = set(f.expected.get("deployments", [])) - {r.deployment for r in runs}
            if not missing:
                await self._queue.finish(f.seq, State.DELIVERED, at=now)
                self._dirty = True  # its branch is free for the next push
                self._metrics.delivered.inc()
                self._metrics.last_delivered.set(now)
                names = ", ".join(r.name for r in runs) or "no run: no trigger matches it"
                logger.info("push to %s %s at %s became %s", f.service, f.ref, f.after[:12], names)
            elif now - float(f.expected.get("first_posted", now)) > self._settings.give_up_after:
                reason = f"Prefect created no run of deployment(s) {', '.join(sorted(missing))}"
                await self._prefect.record_failed(
                    f.service, f.ref, f.after, str(f.event["id"]), reason
                )
                await self._queue.finish(f.seq, State.FAILED, at=now, error=reason)
                self._dirty = True
                self._metrics.failed.inc()
                logger.error(
                    "gave up on the push to %s %s at %s: %s", f.service, f.ref, f.after, reason
                )

    async def _record_superseded(self) -> None:
        pushes = await self._queue.unrecorded()
        for _, group in groupby(pushes, key=lambda p: p.by_seq):
            members = list(group)
            for i in range(0, len(members), _RECORD_CHUNK):
                chunk = members[i : i + _RECORD_CHUNK]
                await self._prefect.record_superseded(chunk)
                await self._queue.recorded([p.seq for p in chunk])

    def _complain(self, what: str, message: str) -> None:
        """Log ``message`` at most once a minute per kind, so an outage does not flood the log."""
        now = time.monotonic()
        if now - self._complained.get(what, float("-inf")) >= 60:
            self._complained[what] = now
            logger.warning("%s", message)


def _expect(
    flight: InFlight, runs: list[ExpectedRun], now: float, *, restart_clock: bool
) -> dict[str, Any]:
    """What to look for: the runs of the latest post, by key, with the keys of every post before.

    A key from an earlier post still counts when its run appears: the
    automations may have been re-created in between, with other ids. The
    give-up clock starts at the first post, and again at the first post after
    an outage: time Prefect was down is not time it had to create the runs.
    """
    keys = dict(flight.expected.get("keys", {}))
    keys.update({r.key: r.deployment for r in runs})
    first = now if restart_clock else flight.expected.get("first_posted", now)
    return {
        "deployments": sorted({r.deployment for r in runs}),
        "keys": keys,
        "first_posted": first,
    }
