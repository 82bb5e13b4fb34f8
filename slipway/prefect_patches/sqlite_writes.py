"""Write transactions on SQLite take the write lock when they begin.

Stands in for a fix to PrefectHQ/prefect#23051 (also #22967, #19771 and
#10188), still open in Prefect 3.9.1.

Prefect opens most write transactions on SQLite with a deferred ``BEGIN``:
the transaction reads first, on a snapshot, and asks for the write lock at its
first write. When another connection committed in between, SQLite cannot
upgrade the stale snapshot and fails at once with ``SQLITE_BUSY_SNAPSHOT``,
without waiting; Prefect answers 503, and its client retries after 2, 4, 8, 16
and 32 s. Creating a run from a deployment is such a transaction (it reads the
deployment, then inserts the run). Under a push burst the triggers service
commits tens of times a second, so the runs that triggers started nearly all
failed this way: 5 run-deployment actions finished in three minutes, each
after 52 s on average, while 4,267 pushes had fired their trigger.

`apply` makes every transaction Prefect begins on SQLite a ``BEGIN
IMMEDIATE``, which Prefect already uses for the transactions it found racing
(setting a flow or task run's state, marking deployments ready when a worker
polls). A transaction then waits for the lock in SQLite's busy handler, up to
Prefect's 60 s busy timeout, instead of failing and sleeping in the client.
Reads outside a transaction are not touched, and PostgreSQL is not touched:
its configuration is another class.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply"]

PATCH = Patch(
    name="sqlite-writes",
    module="prefect.server.database.configurations",
    qualname="AioSqliteConfiguration.begin_transaction",
    upstream="https://github.com/PrefectHQ/prefect/issues/23051",
    fingerprint="3e88ee3fa5a8bb46",
)


def apply() -> bool:
    """Begin every SQLite transaction of Prefect's server IMMEDIATE; safe to call twice.

    Returns whether the change is in place (not when Prefect's code changed since this was written).
    """
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "_slipway_immediate", False):
        return True
    if not PATCH.applicable():
        return False

    @asynccontextmanager
    async def begin_transaction(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AsyncGenerator[Any, None]:
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_transaction._slipway_immediate = True  # type: ignore[attr-defined]
    begin_transaction.__doc__ = original.__doc__
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
    return True
