"""A write transaction that read first survives another connection's commit once the fix is applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from slipway.prefect_patches import sqlite_writes
from tests.slipway.helpers import own_database


async def _read_then_write_while_another_commits(database: Path) -> tuple[bool, list[str]]:
    """Read, let another session create a flow, then write; whether the other waited, and the flows."""
    from prefect.server import models, schemas
    from prefect.server.database import provide_database_interface

    with own_database(database):
        db = provide_database_interface()
        await db.create_db()
        async with db.session_context(begin_transaction=True) as session:
            await models.flows.create_flow(session, flow=schemas.core.Flow(name="first"))

        async def other() -> None:
            async with db.session_context(begin_transaction=True) as session:
                await models.flows.create_flow(session, flow=schemas.core.Flow(name="other"))

        # As Prefect creates a run from a deployment: read, then write, in one transaction.
        async with db.session_context(begin_transaction=True) as session:
            assert await models.flows.read_flow_by_name(session, "first") is not None
            committing = asyncio.create_task(other())
            done, _ = await asyncio.wait({committing}, timeout=1.0)
            other_waited = not done
            await models.flows.create_flow(session, flow=schemas.core.Flow(name="second"))
        await committing
        async with db.session_context() as session:
            flows = await models.flows.read_flows(session)
        return other_waited, sorted(flow.name for flow in flows)


def test_a_transaction_that_read_first_writes_after_another_commit_only_with_the_fix(
    tmp_path, monkeypatch
):
    from prefect.server.database.configurations import AioSqliteConfiguration

    transaction = AioSqliteConfiguration.begin_transaction
    monkeypatch.setattr(AioSqliteConfiguration, "begin_transaction", transaction)  # undone after
    with pytest.raises(OperationalError, match="database is locked"):  # SQLITE_BUSY_SNAPSHOT
        asyncio.run(_read_then_write_while_another_commits(tmp_path / "without.db"))

    assert sqlite_writes.apply()
    assert sqlite_writes.apply()  # a second call wraps nothing twice
    other_waited, flows = asyncio.run(_read_then_write_while_another_commits(tmp_path / "with.db"))
    assert other_waited  # the other session waited for the lock instead of going first
    assert flows == ["first", "other", "second"]
