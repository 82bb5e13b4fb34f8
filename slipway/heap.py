"""Python's cyclic garbage collector, set for a long-lived server on one event loop.

A full collection walks every object the process holds and stops the event
loop while it does. Prefect's server holds some 290,000 objects once it has
started (modules, pydantic schemas, SQLAlchemy metadata) and many more while a
push burst is queued in memory, so under load its full collections took up
to 0.8 s each, and every request in flight waited for them.

`settle` moves what start-up made into the permanent generation
(`gc.freeze`), which no collection walks again, and lets the oldest
generation be collected a hundred times less often. Young cycles are still
collected as soon as before.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle"]

THRESHOLDS = (700, 10, 1000)
"""Python's default allocation thresholds, with a hundredth as many full collections."""


def settle() -> None:
    """Freeze the objects alive now and collect the oldest generation rarely; call after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
