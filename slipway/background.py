"""One call run in a daemon thread, its outcome in a `Future`: work a caller overlaps with its own.

Also `import_before_threads`, for callers that start several threads whose
calls import modules.

A daemon thread, not a pool: a stuck call (an engine that never answers)
never holds up the process's exit. The call runs in a copy of the caller's
context, so Prefect's run context and run logger reach it.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["import_before_threads", "in_background"]

T = TypeVar("T")


def in_background(call: Callable[[], T], *, name: str) -> Future[T]:
    """Start ``call`` now in a daemon thread called ``name``; its result or error in the future."""
    outcome: Future[T] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.set_result(context.run(call))
        except BaseException as e:
            outcome.set_exception(e)

    threading.Thread(target=run, name=name, daemon=True).start()
    return outcome


def import_before_threads(*modules: str) -> None:
    """Import ``modules`` in this thread, before threads that import them start side by side.

    Two threads that import a package and one of its modules in opposite
    orders can take Python's import locks crosswise: Python then raises
    `_DeadlockError` in one of them (seen in `slipway status` on CI).
    """
    for module in modules:
        importlib.import_module(module)
