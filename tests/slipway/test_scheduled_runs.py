"""Prefect's scheduler, on its own database, inserts the runs of a cron schedule once the fix is applied."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import InvalidRequestError

from slipway import scheduled_runs
from tests.slipway.helpers import own_database


async def _schedule_runs(database: Path) -> list[tuple[str, str]]:
    """Create a flow and a ``*/30`` deployment, let Prefect schedule it; each run's state type and name."""
    from prefect.server import models, schemas
    from prefect.server.database import provide_database_interface
    from prefect.server.schemas.schedules import CronSchedule

    with own_database(database):
        db = provide_database_interface()
        await db.create_db()
        async with db.session_context(begin_transaction=True) as session:
            flow = await models.flows.create_flow(session, flow=schemas.core.Flow(name="nightly"))
            deployment = await models.deployments.create_deployment(
                session,
                schemas.core.Deployment(
                    name="scan",
                    flow_id=flow.id,
                    schedules=[
                        schemas.core.DeploymentSchedule(
                            schedule=CronSchedule(cron="*/30 * * * *"), active=True
                        )
                    ],
                ),
            )
            assert deployment is not None
            ids: list[UUID] = list(
                await models.deployments.schedule_runs(session, deployment_id=deployment.id)
            )
        async with db.session_context() as session:
            rows = await session.execute(
                sa.select(db.FlowRunState.type, db.FlowRunState.name)
                .join(db.FlowRun, db.FlowRun.state_id == db.FlowRunState.id)
                .where(db.FlowRun.id.in_(ids))
            )
            return [(str(kind.value), name) for kind, name in rows]


def test_prefects_scheduler_inserts_cron_runs_only_with_the_fix(tmp_path, monkeypatch):
    from prefect.server.database import orm_models

    hybrid = orm_models.FlowRun.__dict__["state"]
    monkeypatch.setattr(hybrid, "bulk_dml_setter", None)  # as Prefect 3.8.8 ships it
    with pytest.raises(InvalidRequestError, match="bulk DML"):
        asyncio.run(_schedule_runs(tmp_path / "without.db"))

    assert scheduled_runs.apply()
    assert scheduled_runs.apply()  # a second call changes nothing
    runs = asyncio.run(_schedule_runs(tmp_path / "with.db"))
    assert len(runs) >= 3  # Prefect's minimum of runs ahead
    assert set(runs) == {("SCHEDULED", "Scheduled")}
