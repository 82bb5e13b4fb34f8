"""One call run in a daemon thread, its outcome in a `Future`: work a caller overlaps with its own.

`in_background` starts a daemon thread, not a pool: a stuck call (an engine
that never answers) never holds up the process's exit. `alongside` is for a
call that must not outlive the caller's block (a Prefect task, whose run
would be left Running; a clone the caller removes afterwards): leaving the
block waits for it. `meanwhile` takes calls handed to it during the block
(a report what follows does not need), and leaving waits for them too. Each
call runs in a copy of its caller's context, so Prefect's run context and
run logger reach it.

Also `import_before_threads`, for callers that start several threads whose
calls import modules.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["alongside", "import_before_threads", "in_background", "meanwhile"]

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


@contextmanager
def alongside(call: Callable[[], T], *, name: str) -> Iterator[Future[T]]:
    """``call`` run in a thread called ``name`` while the block runs; leaving waits for it to end."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        yield pool.submit(contextvars.copy_context().run, call)


@contextmanager
def meanwhile(*, name: str) -> Iterator[Callable[[Callable[[], object]], None]]:
    """A hand-off for calls that the rest of the block need not wait for.

    Each call handed over runs in a thread called ``name``, in a copy of the
    context it was handed from, in order. Leaving the block waits for them
    all, then raises the first one's error, unless the block raised its own.
    """
    handed: list[Future[object]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:

        def hand(call: Callable[[], object]) -> None:
            handed.append(pool.submit(contextvars.copy_context().run, call))

        yield hand
    for outcome in handed:
        outcome.result()


def import_before_threads(*modules: str) -> None:
    """Import ``modules`` in this thread, before threads that import them start side by side.

    Two threads that import a package and one of its modules in opposite
    orders can take Python's import locks crosswise: Python then raises
    `_DeadlockError` in one of them (seen in `slipway status` on CI).
    """
    for module in modules:
        importlib.import_module(module)
