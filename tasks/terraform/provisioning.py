"""The steps of provisioning and destroying an environment: the Atlantis loop as tasks.

A request is checked before any Terraform command runs; a plan is saved and
published; a plan that needs it waits for a human's approval in the UI; the
saved plan, never a fresh one, is applied; what was applied is kept in the
catalog entry (`tasks.catalog.EnvironmentRecord`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks.terraform_backend import TerraformBackend
from slipway.errors import GateRefused, InvalidRequest
from slipway.names import EnvironmentName, ServiceName
from slipway.run_log import run_logger
from tasks.approval import await_approval
from tasks.catalog import Catalog, CatalogEntry, EnvironmentRecord
from tasks.terraform.config import ensure_state_bucket
from tasks.terraform.environments import (
    environment_module,
    is_preview,
    record_outputs,
    resolve_variables,
    state_location,
)
from tasks.terraform.models import PlanResult, plan_markdown
from tasks.terraform.workspace import Terraform, Workspace

__all__ = [
    "EnvironmentRequest",
    "apply_plan",
    "approve_plan",
    "check_destroy_request",
    "check_environment_request",
    "expired_previews",
    "forget_environment",
    "plan_environment",
    "record_environment",
]

_MAX_TTL_HOURS = 90 * 24


@dataclass(frozen=True)
class EnvironmentRequest:
    """A checked request to provision or destroy one environment."""

    entry: CatalogEntry
    """The service's catalog entry."""
    variables: dict[str, object]
    """Every variable to plan, the service's own included."""
    ws: Workspace
    expires_at: datetime | None = None
    """When a preview environment is destroyed; None for others."""
    recorded: EnvironmentRecord | None = None
    """What the catalog keeps of the environment, if it was provisioned."""


@task(name="check-environment-request", cache_policy=NO_CACHE)
def check_environment_request(
    tf: Terraform,
    backend: TerraformBackend,
    service: ServiceName,
    environment: EnvironmentName,
    variables: dict[str, Any],
    ttl_hours: float,
) -> EnvironmentRequest:
    """Refuse an unknown service or environment and bad variables; nothing runs before this."""
    module = environment_module(backend)
    ws = tf.workspace(module, service, environment)
    if not 0 < ttl_hours <= _MAX_TTL_HOURS:
        raise InvalidRequest(f"ttl_hours {ttl_hours} is outside (0, 2160]", hint="give 1 to 2160")
    entry = Catalog.load_default().get(service)
    resolved = resolve_variables(entry, environment, variables, module)
    expires = datetime.now(UTC) + timedelta(hours=ttl_hours) if is_preview(environment) else None
    return EnvironmentRequest(entry, resolved, ws, expires, entry.outputs.get(environment))


@task(name="check-destroy-request", cache_policy=NO_CACHE)
def check_destroy_request(
    tf: Terraform, backend: TerraformBackend, service: ServiceName, environment: EnvironmentName
) -> EnvironmentRequest:
    """The environment to destroy, planned with the variables it was applied with."""
    module = environment_module(backend)
    ws = tf.workspace(module, service, environment)
    entry = Catalog.load_default().get(service)
    record = entry.outputs.get(environment)
    variables = (
        record.applied_variables() if record else resolve_variables(entry, environment, {}, module)
    )
    return EnvironmentRequest(entry, variables, ws, recorded=record)


@task(name="plan-environment", cache_policy=NO_CACHE)
def plan_environment(
    tf: Terraform, backend: TerraformBackend, request: EnvironmentRequest, *, destroy: bool = False
) -> PlanResult:
    """Plan to a saved plan file of this run's own, and publish what it would do.

    The S3 state bucket is created, with versioning, when a first plan finds it missing.
    """
    ws = request.ws
    if not destroy:
        ensure_state_bucket(backend)
    name = f"{'destroy' if destroy else 'plan'}-{uuid.uuid4().hex[:12]}"
    plan = tf.plan(ws, request.variables, destroy=destroy, name=name)
    verb = "Destroy" if destroy else "Plan"
    create_markdown_artifact(
        key=f"plan-{ws.service}-{ws.environment}",
        markdown=plan_markdown(f"{verb} of {ws.service} in {ws.environment}", plan.summary),
        description=f"{verb} of {ws.service}/{ws.environment}: {plan.summary.describe()}",
    )
    run_logger(__name__).info("%s/%s: %s", ws.service, ws.environment, plan.summary.describe())
    return plan


@task(name="approve-plan", cache_policy=NO_CACHE)
def approve_plan(ws: Workspace, plan: PlanResult, *, timeout: int) -> str:
    """Pause the run until a reviewer approves or rejects the plan in the UI.

    A refused plan's file is deleted: it holds variable values.

    Raises:
        GateRefused: rejected, or nobody answered within ``timeout`` seconds.
    """
    title = f"Approve the plan of {ws.service} in {ws.environment}?"
    try:
        return await_approval(
            f"the plan of {ws.service}/{ws.environment}",
            plan_markdown(title, plan.summary),
            timeout=timeout,
            hint="run the flow again and approve the paused run under Flow Runs",
            rejected_hint="change the request and provision again",
        )
    except GateRefused:
        plan.plan_file.unlink(missing_ok=True)
        raise


@task(name="apply-plan", cache_policy=NO_CACHE)
def apply_plan(tf: Terraform, ws: Workspace, plan: PlanResult) -> None:
    """Apply exactly the saved plan; a failure carries Terraform's diagnostics.

    A plan without changes applies nothing. Its file goes either way: it
    holds variable values.
    """
    if plan.has_changes:
        tf.apply(ws, plan)
    else:
        plan.plan_file.unlink(missing_ok=True)


@task(name="record-environment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_environment(
    tf: Terraform, backend: TerraformBackend, request: EnvironmentRequest, note: str
) -> EnvironmentRecord:
    """Keep the outputs, applied variables and state location in the catalog entry."""
    ws = request.ws
    record = record_outputs(
        tf.output(ws),
        request.variables,
        state=state_location(backend, ws),
        expires_at=request.expires_at,
    )
    Catalog.load_default().update(
        ws.service,
        lambda e: e.model_copy(update={"outputs": {**e.outputs, ws.environment: record}}),
        message=f"provision {ws.service}/{ws.environment}: {note}",
    )
    return record


@task(name="forget-environment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def forget_environment(tf: Terraform, request: EnvironmentRequest, note: str) -> None:
    """Drop a destroyed environment's record from the catalog, and its rendered workspace."""
    ws = request.ws
    if request.recorded is not None:
        Catalog.load_default().update(
            ws.service,
            lambda e: e.model_copy(
                update={"outputs": {k: v for k, v in e.outputs.items() if k != ws.environment}}
            ),
            message=f"destroy {ws.service}/{ws.environment}: {note}",
        )
    tf.discard(ws)


@dataclass(frozen=True)
class ExpiredPreview:
    """A preview environment whose time is up."""

    service: ServiceName
    environment: EnvironmentName
    expired_at: datetime


@task(name="find-expired-previews", cache_policy=NO_CACHE)
def expired_previews(now: datetime) -> list[ExpiredPreview]:
    """Every preview environment in the catalog whose ``expires_at`` is not after ``now``."""
    return [
        ExpiredPreview(entry.name, EnvironmentName.parse(environment), record.expires_at)
        for entry in Catalog.load_default().entries()
        for environment, record in sorted(entry.outputs.items())
        if is_preview(environment) and record.expires_at and record.expires_at <= now
    ]
