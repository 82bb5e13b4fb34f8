"""Flow runs end when their work ends, not up to a second later.

Stands in for a fix to PrefectHQ/prefect#19641, which moved flow-run
heartbeats into the flow engine (still so in Prefect 3.9.1). Every flow run
starts a heartbeat thread that sleeps in steps of ``time.sleep(1)``, and the
engine joins that thread as the run ends, so each run waits for the current
one-second sleep to finish: measured here, an empty flow with one task took
1.15 s instead of 0.24 s, and every build-test-deploy paid the same second.

`apply` swaps in the same context manager with the sleep replaced by a wait
on the stop event, so the join returns at once. Heartbeats are still sent
when the run starts and every interval after, and stop when the run's state
is final, exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Generator
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply"]

PATCH = Patch(
    name="heartbeats",
    module="prefect.flow_engine",
    qualname="_send_heartbeats",
    upstream="https://github.com/PrefectHQ/prefect/pull/19641",
    fingerprint="eca6cd31f93e1032",
)


@contextlib.contextmanager
def _send_heartbeats(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
    """Prefect's `_send_heartbeats`, with an interruptible wait between heartbeats."""
    import prefect.flow_engine

    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, prefect.flow_engine.MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            run = engine.flow_run
            if run and run.state and run.state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread sees the caller's context, and so its settings (the API URL), as Prefect's does.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)


def apply() -> bool:
    """Use the interruptible heartbeat in this process's flow engine; safe to call twice.

    Returns whether it is in place (not when Prefect's code changed since this was written).
    """
    import prefect.flow_engine

    if prefect.flow_engine._send_heartbeats is _send_heartbeats:
        return True
    if not PATCH.applicable():
        return False
    prefect.flow_engine._send_heartbeats = _send_heartbeats
    return True
