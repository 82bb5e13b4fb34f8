"""Cron schedules produce runs on SQLAlchemy 2.1 (a fix to Prefect 3.8.8's scheduler).

Prefect's scheduler inserts a deployment's next runs with one ORM bulk INSERT
whose rows carry a ``state`` key beside the columns; Prefect writes those
states itself right after. SQLAlchemy 2.0 ignored keys that are not columns.
SQLAlchemy 2.1 hands a key that names a hybrid property (``FlowRun.state`` is
one) to the hybrid's bulk-DML setter, and refuses the statement when there is
none: ``Can't evaluate bulk DML statement``. So no cron schedule in
prefect.yaml ever produced a run: not the nightly scan, not the drift check,
not preview expiry.

`apply` gives ``FlowRun.state`` a bulk-DML setter that leaves the row as it
is, which is what SQLAlchemy 2.0 did. It changes nothing on a SQLAlchemy
without bulk-DML setters, or when Prefect's hybrid already has one (a release
that fixed it).

Pinning SQLAlchemy below 2.1 was tried first and measured. Under a push burst,
2.0's aiosqlite adapter left a failed cursor to the garbage collector, which
finalized it on the server's event loop while another thread held that
connection, waiting on SQLite's lock. The server stopped answering for
SQLite's 60 s busy timeout, in three load runs out of three; with 2.1, in
none.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["apply"]

logger = logging.getLogger(__name__)


def _leave_row_alone(cls: Any, mapping: MutableMapping[str, Any], value: Any) -> None:
    """The row's ``state`` is not a column; Prefect inserts the state rows itself."""


def apply() -> bool:
    """Let Prefect's scheduler bulk-insert runs on SQLAlchemy 2.1; safe to call twice.

    Returns whether the fix is in place (False when it is not needed).
    """
    from prefect.server.database import orm_models
    from sqlalchemy.ext.hybrid import hybrid_property

    state = orm_models.FlowRun.__dict__.get("state")
    if not isinstance(state, hybrid_property) or not hasattr(state.inplace, "bulk_dml"):
        logger.debug("this SQLAlchemy or Prefect needs no bulk-DML setter for FlowRun.state")
        return False
    if state.bulk_dml_setter not in (None, _leave_row_alone):
        return False  # Prefect brings its own
    state.inplace.bulk_dml(_leave_row_alone)
    return True
