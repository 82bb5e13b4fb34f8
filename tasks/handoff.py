"""Hand work on to another of the platform's deployments, when it is deployed.

Flows chain through deployments rather than direct calls, so each step runs
where its deployment runs (the embedded runner, or a worker of the pool) and
shows in the UI as its own run, linked to the one that started it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict

__all__ = ["HandOff", "hand_off"]


class HandOff(BaseModel):
    """One run started for another deployment, or why none was."""

    model_config = ConfigDict(frozen=True)

    deployment: str
    flow_run_id: UUID | None = None
    flow_run_name: str | None = None
    skipped: str | None = None
    """Why no run was started, e.g. the deployment does not exist here."""

    def describe(self) -> str:
        """One line for a markdown artifact."""
        if self.flow_run_id is None:
            return f"`{self.deployment}`: not started ({self.skipped})"
        return f"`{self.deployment}`: run [{self.flow_run_name}](/runs/flow-run/{self.flow_run_id})"


@task(name="hand-off", retries=2, retry_delay_seconds=2)
def hand_off(deployment: str, parameters: dict[str, Any]) -> HandOff:
    """Start a run of ``deployment`` ("flow-name/deployment-name") without waiting for it.

    A deployment that does not exist is skipped with a log line: a platform
    may run without some capabilities, and onboarding still completes.
    """
    logger = get_run_logger()
    try:
        run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=True)
        assert isinstance(run, FlowRun)  # called from sync code, so never a coroutine
    except ObjectNotFound:
        logger.warning("deployment %s does not exist; skipped", deployment)
        return HandOff(deployment=deployment, skipped="no such deployment")
    logger.info("started %s: %s", deployment, run.name)
    return HandOff(deployment=deployment, flow_run_id=run.id, flow_run_name=run.name)
