"""One release at a time per service and environment, and a push that gives way.

`deploy_slot` is a Prefect global concurrency limit of 1 per service and
environment: build-test-deploy, promote and rollback all take it before they
touch that environment's containers.

A push that is still waiting for the slot when a newer push of the same
service and environment arrives gives way: `Superseded` is raised, the slot is
never taken, and build-test-deploy ends Cancelled. So is a push whose newer
push arrived while it was built (`give_way_to_newer_push`, before the
switch). Each look runs in the background: the first, with a first attempt
at the slot, beside the opening of the run's stage (`first_try_at_slot`), so
that an uncontended slot is held by the time the stage is open; the last
beside the steps up to the switch (`look_for_newer_push`).

The slot covers the switch, not what follows it: a release hands it back
(`ReleaseSlot.hand_back`) before its release analysis, as Argo Rollouts lets
a newer revision start while the older one's analysis runs, and takes it
again (`ReleaseSlot.retaken`) only to roll back.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from slipway.background import in_background
from slipway.errors import Superseded
from slipway.run_log import run_logger

__all__ = [
    "BUILD_FLOW",
    "DEFAULT_ENVIRONMENT",
    "LEASE_SECONDS",
    "ReleaseSlot",
    "SlotTry",
    "deploy_slot",
    "first_try_at_slot",
    "give_way_to_newer_push",
    "let_go",
    "look_for_newer_push",
    "slot_name",
]

BUILD_FLOW: Final = "build-test-deploy"
"""The flow whose runs give way to newer runs of the same service and environment."""
DEFAULT_ENVIRONMENT = "dev"
"""Where build-test-deploy releases when no environment is given."""
LEASE_SECONDS = 120
"""A dead holder's slot frees itself after this long; a live one renews it."""
_WAITING = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
_CLOCK_SLACK = timedelta(minutes=10)
"""How much earlier than this run's creation a newer run may be expected to start:
the clocks of the hosts that create runs may differ."""


def slot_name(service: str, environment: str) -> str:
    """The global concurrency limit that serialises releases of one service environment."""
    return f"slipway-deploy:{service}:{environment}"


class ReleaseSlot:
    """The held release slot of one service environment, which its holder may hand back early."""

    def __init__(self, service: str, environment: str, held: ExitStack) -> None:
        self.service = service
        self.environment = environment
        self._held = held
        self.handed_back = False

    def hand_back(self) -> None:
        """Free the slot now (once the switch is done); later calls do nothing.

        A Prefect API error while freeing it is logged, not raised: the
        release serves and must still be recorded, and the lease frees the
        slot by itself after `LEASE_SECONDS` (no renewal follows).
        """
        if self.handed_back:
            return
        self.handed_back = True
        name = slot_name(self.service, self.environment)
        try:
            self._held.close()
        except httpx.HTTPError as e:
            run_logger(__name__).warning(
                "Could not hand back the release slot %s (%s): its lease frees it within %d s",
                name,
                e,
                LEASE_SECONDS,
            )
            return
        run_logger(__name__).info("Handed back the release slot %s", name)

    @contextmanager
    def retaken(self) -> Iterator[None]:
        """Hold the slot again after `hand_back`, waiting while another release holds it.

        A slot that was never handed back is still held: nothing is taken twice.
        """
        if not self.handed_back:
            yield
            return
        with deploy_slot(self.service, self.environment):
            yield


def look_for_newer_push(service: str, environment: str) -> Future[str | None]:
    """Start looking for a newer push now, in the background (`give_way_to_newer_push`)."""
    return in_background(functools.partial(_newer_push, service, environment), name="newer-push")


@dataclass
class SlotTry:
    """One look for a newer push and, when it found none, one attempt at the slot."""

    newer: str | None = None
    """Why the run gives way, when the look found a newer push."""
    held: ExitStack | None = None
    """The slot, when it was taken; whoever `claim`s it frees it."""
    refused: ConcurrencySlotAcquisitionError | None = None
    """Why the slot was not taken, unless another run holds it: its limit may not exist yet."""

    def claim(self) -> ExitStack | None:
        """The held slot, to one caller only."""
        held, self.held = self.held, None
        return held


def first_try_at_slot(service: str, environment: str) -> Future[SlotTry]:
    """Start a run's first look for a newer push and, when none, its first attempt at the slot.

    build-test-deploy starts it before it opens its stage, in the background,
    so that an uncontended slot costs the release no time (`deploy_slot`'s
    ``first_try``). It never creates the slot's limit: a service or
    environment that turns out not to exist gets none. A run that ends
    before `deploy_slot` claims the slot frees it with `let_go`.
    """
    look = functools.partial(_newer_push, service, environment)
    attempt = functools.partial(_try, slot_name(service, environment), look)
    return in_background(attempt, name="release-slot")


def let_go(trying: Future[SlotTry], service: str, environment: str) -> None:
    """Hand back the slot of ``trying`` (`first_try_at_slot`) unless `deploy_slot` claimed it."""
    if trying.exception() is None and (held := trying.result().claim()) is not None:
        ReleaseSlot(service, environment, held).hand_back()


@contextmanager
def deploy_slot(
    service: str,
    environment: str,
    *,
    give_way: bool = False,
    poll_seconds: float = 2.0,
    first_try: Future[SlotTry] | None = None,
) -> Iterator[ReleaseSlot]:
    """Hold the one release slot of ``service`` in ``environment``.

    Attempts start 0.1 s apart and back off to ``poll_seconds``: a slot that
    the previous release is just handing back is taken at once, a long
    release is not polled hard. The slot is a Prefect global concurrency
    limit of 1, created when missing; its lease expires if the holder dies.
    Each attempt is a single request (no server-side wait that a timeout could
    cut short after the slot was granted, which would strand a lease).

    Yields:
        The held slot, which a release hands back after its switch.

    Args:
        service: The service released.
        environment: Where it is released.
        give_way: Look for a newer push before each attempt (`Superseded`).
        poll_seconds: The longest pause between attempts.
        first_try: With ``give_way``, the first look and attempt, made
            earlier (`first_try_at_slot`); later ones are made here.

    Raises:
        Superseded: With ``give_way``, a newer push of the same service and
            environment arrived while this run waited; the slot was not taken.
    """
    name = slot_name(service, environment)
    look = functools.partial(_newer_push, service, environment) if give_way else None
    slot = ReleaseSlot(service, environment, _acquire(name, look, first_try, poll_seconds))
    run_logger(__name__).info("Holding the release slot %s", name)
    try:
        yield slot
    finally:
        slot.hand_back()


def _acquire(
    name: str,
    look: Callable[[], str | None] | None,
    first_try: Future[SlotTry] | None,
    poll_seconds: float,
) -> ExitStack:
    """The slot ``name`` taken, in an exit stack that frees it; see `deploy_slot`."""
    pause = min(0.1, poll_seconds)
    looked_for_limit = False  # created at the first release, not read before every one
    tried = first_try.result() if first_try is not None else _try(name, look)
    while True:
        if tried.newer is not None:
            raise Superseded(tried.newer)
        if (held := tried.claim()) is not None:
            return held
        if tried.refused is not None:
            if looked_for_limit:
                raise tried.refused
            _ensure_limit(name)  # strict: refused because the limit does not exist yet
            looked_for_limit = True
        else:
            time.sleep(pause)
            pause = min(pause * 2, poll_seconds)
        tried = _try(name, look)


def _try(name: str, look: Callable[[], str | None] | None) -> SlotTry:
    """Look for a newer push, then, when there is none, make one attempt at the slot ``name``."""
    if look is not None and (newer := look()) is not None:
        return SlotTry(newer=newer)
    held = ExitStack()
    try:
        held.enter_context(
            concurrency(
                name,
                occupy=1,
                max_retries=0,
                lease_duration=LEASE_SECONDS,
                strict=True,
                holder=_holder(),
                # A renewal that fails once under load must not kill a release midway.
                raise_on_lease_renewal_failure=False,
            )
        )
    except ConcurrencySlotAcquisitionError as e:
        return SlotTry() if _locked(e) else SlotTry(refused=e)
    return SlotTry(held=held)


def give_way_to_newer_push(looking: Future[str | None], *, note: str = "") -> None:
    """Raise `Superseded` when ``looking`` (`look_for_newer_push`) found a newer push.

    build-test-deploy looks as its image is pushed and waits for the answer
    only right before its release changes anything (`deploy_release`'s
    ``before_switch``), so the look overlaps the steps up to there.

    Args:
        looking: The look for a newer push.
        note: What this run did already, added to the reason.
    """
    newer = looking.result()
    if newer is not None:
        raise Superseded(f"{newer}; {note}" if note else newer)


def _newer_push(service: str, environment: str) -> str | None:
    """Why this build-test-deploy should give way: a newer run of the same target exists.

    Newer means created later, for the same service and environment, and still
    waiting, running or already completed; a failed or cancelled newer run
    does not stop an older one from delivering.
    """
    context = FlowRunContext.get()
    me = context.flow_run if context is not None else None
    if me is None or (created := me.created) is None:
        return None
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[BUILD_FLOW])),
            flow_run_filter=recent_runs(created),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=100,
            offset=0,
        )
    for run in runs:
        if run.id == me.id or run.created is None or run.created <= created:
            continue
        wanted = run.parameters
        if (
            wanted.get("service") == service
            and wanted.get("environment", DEFAULT_ENVIRONMENT) == environment
        ):
            return f"superseded by the newer run {run.name} of {str(wanted.get('commit', ''))[:12]}"
    return None


def recent_runs(created: datetime) -> FlowRunFilter:
    """The runs that may be newer than one ``created`` then: waiting, running or completed.

    Prefect cannot filter by creation, so the server is asked only for runs
    expected to start since shortly before (`_CLOCK_SLACK`): a run is expected
    to start when it is created, or later when scheduled so. The completed
    history is not read at every look.
    """
    return FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[*_WAITING, StateType.COMPLETED])
        ),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=created - _CLOCK_SLACK),
    )


def _locked(error: ConcurrencySlotAcquisitionError) -> bool:
    """Whether the slot was refused because another run holds it (HTTP 423)."""
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectAlreadyExists):  # another run created it first
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _holder() -> ConcurrencyLeaseHolder | None:
    """The flow run holding the slot, so the UI shows who has it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)
