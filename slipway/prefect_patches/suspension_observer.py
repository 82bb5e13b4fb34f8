"""A deployment's flow run starts its suspension observer with the run, not after its first requests.

Stands in for a change to the start of every run of a deployment that
PrefectHQ/prefect#21875 made (still so in Prefect 3.9.1). Before a run may
propose Running, it waits until its suspension observer has subscribed to the
server's events and read the run's state: a run suspended before it started
must not resume itself by proposing Running (the server would take it).
Prefect starts that observer only after the engine's client has checked the
server's version and updated the run, two round trips, and then waits for
it: 40 ms of each run's start here, on the way from a push to its build.

`apply` starts the same observer (Prefect's `FlowRunSuspendingObserver`, in
a thread of its own, with the caller's context) as `run_flow` begins, and
`observe_flow_run_suspension` then waits for that one instead of starting
another. The wait before Running stays; only the observer's start moves
earlier. Its stop no longer waits for a 0.2 s sleep to end, and an observer
that no run took (the engine failed before it got there) stops with
`run_flow`. A suspension seen before the run registered its request is
handed over when the run takes the observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Generator
from typing import Any
from uuid import UUID

from slipway.prefect_patches.base import Patch

__all__ = ["OBSERVE_PATCH", "PATCH", "apply"]

_UPSTREAM = "https://github.com/PrefectHQ/prefect/pull/21875"
PATCH = Patch(
    name="suspension-observer",
    module="prefect._flow_run_suspension",
    qualname="observe_flow_run_suspension",
    upstream=_UPSTREAM,
    fingerprint="c4ebe8ec43d5b390",
)
OBSERVE_PATCH = Patch(
    name="suspension-observer-start",
    module="prefect.flow_engine",
    qualname="run_flow",
    upstream=_UPSTREAM,
    fingerprint="533238b81be888b9",
)

_STOP_SECONDS = 2.0
"""How long a run's end waits for its observer's thread, as Prefect's does."""


class _Observer:
    """One run's suspension observer, started ahead of the engine that takes it."""

    def __init__(self, flow_run_id: UUID, polling_interval: float = 10) -> None:
        self.flow_run_id = flow_run_id
        self.ready = threading.Event()
        self._polling_interval = polling_interval
        self._lock = threading.Lock()
        self._request: Any = None
        self._early: Any = None
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_soon: asyncio.Event | None = None
        # As Prefect's: the thread sees the caller's context (settings, the API URL).
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._main,),
            name="suspension-observer",
            daemon=True,
        )

    def start(self) -> _Observer:
        self._thread.start()
        return self

    def take(self, request: Any) -> None:
        """``request`` is the run's: mark it on a suspension, and now if one came already."""
        with self._lock:
            self._request = request
            early, self._early = self._early, None
        if early is not None:
            request.mark_requested(early)

    def stop(self) -> None:
        self._stopped.set()
        loop, stop_soon = self._loop, self._stop_soon
        if loop is not None and stop_soon is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed already
                loop.call_soon_threadsafe(stop_soon.set)
        self._thread.join(timeout=_STOP_SECONDS)

    def _suspended(self, flow_run_id: UUID, state: Any) -> None:
        from prefect._flow_run_suspension import mark_flow_run_suspension_requested

        if mark_flow_run_suspension_requested(flow_run_id, state):
            return
        with self._lock:
            request = self._request
            if request is None:
                self._early = state
        if request is not None:
            request.mark_requested(state)

    def _main(self) -> None:
        from prefect.logging.loggers import get_logger

        try:
            asyncio.run(self._observe())
        except Exception:
            get_logger("flow_run_suspension").debug(
                "Flow run suspension observer exited with an exception", exc_info=True
            )
        finally:
            self.ready.set()

    async def _observe(self) -> None:
        from prefect._internal.observers import FlowRunSuspendingObserver

        self._stop_soon = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stopped.is_set():
            return
        async with FlowRunSuspendingObserver(
            on_suspended=self._suspended, polling_interval=self._polling_interval
        ) as observer:
            await observer.watch_flow_run_id(self.flow_run_id)
            self.ready.set()
            await self._stop_soon.wait()


_started: dict[UUID, _Observer] = {}
_started_lock = threading.Lock()


def _adopt(flow_run_id: UUID) -> _Observer | None:
    with _started_lock:
        return _started.pop(flow_run_id, None)


@contextlib.contextmanager
def observe_flow_run_suspension(
    flow_run_id: UUID, suspension_request: Any, polling_interval: float = 10
) -> Generator[None, None, None]:
    """Prefect's, waiting for the observer `run_flow` started when there is one."""
    observer = _adopt(flow_run_id)
    if observer is None:
        with _prefect_observe(flow_run_id, suspension_request, polling_interval):
            yield
        return
    observer.take(suspension_request)
    observer.ready.wait()
    try:
        yield
    finally:
        observer.stop()


def _prefect_observe(*args: Any) -> contextlib.AbstractContextManager[None]:
    from prefect._flow_run_suspension import observe_flow_run_suspension as prefect_observe

    return prefect_observe(*args)


def _starting_observer(run_flow: Any) -> Any:
    """``run_flow`` that starts the suspension observer of a deployment's run first."""

    @functools.wraps(run_flow)
    def starting(*args: Any, **kwargs: Any) -> Any:
        from prefect.context import FlowRunContext

        flow_run = kwargs.get("flow_run", args[1] if len(args) > 1 else None)
        run_id = getattr(flow_run, "id", None)
        deployment = getattr(flow_run, "deployment_id", None)
        if run_id is None or deployment is None or FlowRunContext.get() is not None:
            return run_flow(*args, **kwargs)
        with _started_lock:
            _started[run_id] = _Observer(run_id).start()
        try:
            return run_flow(*args, **kwargs)
        finally:
            if (untaken := _adopt(run_id)) is not None:  # the engine never got that far
                untaken.stop()

    starting.__slipway_patched__ = True  # type: ignore[attr-defined]
    return starting


def apply() -> bool:
    """Start deployments' suspension observers with their runs; safe to call twice.

    Returns whether it is in place (not when Prefect's code changed since this was written).
    """
    import prefect.flow_engine as engine

    if getattr(engine.run_flow, "__slipway_patched__", False):
        return True
    if not (PATCH.applicable() and OBSERVE_PATCH.applicable()):
        return False
    engine.observe_flow_run_suspension = observe_flow_run_suspension  # type: ignore[attr-defined]
    engine.run_flow = _starting_observer(engine.run_flow)
    return True
