"""Environments with Terraform: plan, show the plan, approve when it matters, apply that plan.

The Atlantis loop, as Prefect flows:

1. the request is checked (service in the catalog, environment, variables and
   their types) before any Terraform command runs;
2. the environment's workspace is rendered and planned to a saved plan file;
3. a ``plan-<service>-<environment>`` artifact lists each resource's action;
4. a plan that destroys anything, or any plan for ``prod``, pauses the run for
   an approval form (``Approval``) in the UI;
5. the saved plan is applied, never a fresh one: Terraform refuses it if state
   moved in between;
6. the outputs are kept in the catalog entry (``outputs[environment]``).

Preview environments (``preview-<branch>``) carry an ``expires_at``;
`expire_preview_environments` destroys those past it, nightly, without approval.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from blocks.terraform_backend import TerraformBackend
from slipway.errors import GateRefused, InvalidRequest, SlipwayError, TerraformError
from slipway.home import SlipwayHome
from tasks.catalog import Catalog, CatalogEntry, EnvironmentRecord
from tasks.terraform import (
    PlanResult,
    Terraform,
    Workspace,
    ensure_state_bucket,
    environment_module,
    is_preview,
    open_terraform,
    plan_markdown,
    record_outputs,
    resolve_variables,
    state_location,
)

__all__ = [
    "APPROVAL_ENVIRONMENTS",
    "Approval",
    "EnvironmentResult",
    "destroy_environment",
    "expire_preview_environments",
    "provision_environment",
]

APPROVAL_ENVIRONMENTS = frozenset({"prod"})
"""Environments whose every plan needs an approval, destroying or not."""

_APPROVAL_POLL_SECONDS = 2
_DAY = 24 * 3600


class Approval(RunInput):
    """The form a reviewer fills in on a paused provision or destroy run."""

    approve: bool = Field(default=False, title="Approve", description="Apply the plan shown above.")
    comment: str = Field(
        default="",
        max_length=500,
        title="Comment",
        description="Why; kept in the run's log and the catalog's commit message.",
    )


class EnvironmentResult(BaseModel):
    """What a provision or destroy run did."""

    service: str
    environment: str
    plan: str = Field(description="Terraform's count: 'N to add, N to change, N to destroy'.")
    applied: bool = Field(description="Whether a plan was applied (False: nothing to do).")
    approval: str = Field(default="", description="'approved: <comment>', or empty if none.")
    outputs: EnvironmentRecord | None = Field(default=None, description="As kept in the catalog.")


@dataclass(frozen=True)
class _Request:
    entry: CatalogEntry
    variables: dict[str, object]
    ws: Workspace
    expires_at: datetime | None


@task(name="check-environment-request", cache_policy=NO_CACHE)
def check_request(
    tf: Terraform,
    backend: TerraformBackend,
    service: str,
    environment: str,
    variables: dict[str, Any],
    ttl_hours: float,
) -> _Request:
    """Refuse an unknown service or environment and bad variables; nothing runs before this."""
    module = environment_module(backend)
    ws = tf.workspace(module, service, environment)  # refuses names that are not DNS labels
    if not 0 < ttl_hours <= 90 * 24:
        raise InvalidRequest(f"ttl_hours {ttl_hours} is outside (0, 2160]", hint="give 1 to 2160")
    entry = Catalog.load_default().get(service)
    resolved = resolve_variables(entry, environment, variables, module)
    expires = datetime.now(UTC) + timedelta(hours=ttl_hours) if is_preview(environment) else None
    return _Request(entry, resolved, ws, expires)


@task(name="plan-environment", cache_policy=NO_CACHE)
def plan_environment(
    tf: Terraform, ws: Workspace, variables: dict[str, object], *, destroy: bool = False
) -> PlanResult:
    """Plan to a saved plan file of this run's own, and publish what it would do."""
    name = f"{'destroy' if destroy else 'plan'}-{uuid.uuid4().hex[:12]}"
    plan = tf.plan(ws, variables, destroy=destroy, name=name)
    verb = "Destroy" if destroy else "Plan"
    create_markdown_artifact(
        key=f"plan-{ws.service}-{ws.environment}",
        markdown=plan_markdown(f"{verb} of {ws.service} in {ws.environment}", plan.summary),
        description=f"{verb} of {ws.service}/{ws.environment}: {plan.summary.describe()}",
    )
    get_run_logger().info("%s/%s: %s", ws.service, ws.environment, plan.summary.describe())
    return plan


def await_approval(ws: Workspace, plan: PlanResult, *, timeout: int) -> str:
    """Pause the run until a reviewer approves or rejects the plan in the UI.

    Raises:
        GateRefused: rejected, or nobody answered within ``timeout`` seconds.
    """
    logger = get_run_logger()
    title = f"Approve the plan of {ws.service} in {ws.environment}?"
    form = Approval.with_initial_data(description=plan_markdown(title, plan.summary))
    logger.info("Waiting up to %d s for an approval of %s", timeout, plan.summary.describe())
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout, poll_interval=_APPROVAL_POLL_SECONDS
        )
    except FlowPauseTimeout as e:
        plan.plan_file.unlink(missing_ok=True)
        raise GateRefused(
            f"nobody approved the plan of {ws.service}/{ws.environment} within {timeout} s",
            hint="run the flow again and approve the paused run under Flow Runs",
        ) from e
    if not answer.approve:
        plan.plan_file.unlink(missing_ok=True)
        reason = answer.comment or "no comment"
        raise GateRefused(
            f"the plan of {ws.service}/{ws.environment} was rejected: {reason}",
            hint="change the request and provision again",
        )
    logger.info("Approved: %s", answer.comment or "no comment")
    return f"approved: {answer.comment}".rstrip(": ")


@task(name="apply-plan", cache_policy=NO_CACHE)
def apply_plan(tf: Terraform, ws: Workspace, plan: PlanResult) -> None:
    """Apply exactly the saved plan; a failure carries Terraform's diagnostics."""
    tf.apply(ws, plan)


@task(name="record-environment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_environment(
    tf: Terraform, backend: TerraformBackend, request: _Request, note: str
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


@flow(name="provision-environment", log_prints=False)
def provision_environment(
    service: str,
    environment: str = "dev",
    variables: dict[str, Any] | None = None,
    ttl_hours: float = 72,
    approval_timeout_seconds: int = _DAY,
) -> EnvironmentResult:
    """Create or change a service's environment: plan, approval when needed, apply, record.

    Args:
        service: A service in the catalog.
        environment: One of the service's environments, or ``preview-<branch>``.
        variables: Module variables, e.g. ``{"replicas": 2, "env_vars": {"MODE": "x"}}``;
            ``service``, ``environment`` and (by default) ``port`` come from the catalog.
        ttl_hours: How long a preview environment lives; ignored for others.
        approval_timeout_seconds: How long a plan that needs approval waits for one.
    """
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    request = check_request(tf, backend, service, environment, variables or {}, ttl_hours)
    ensure_state_bucket(backend)  # S3 only: created with versioning when missing
    plan = plan_environment(tf, request.ws, request.variables)
    approval = ""
    if plan.has_changes:
        if plan.summary.destroys or environment in APPROVAL_ENVIRONMENTS:
            approval = await_approval(request.ws, plan, timeout=approval_timeout_seconds)
        apply_plan(tf, request.ws, plan)
    else:
        plan.plan_file.unlink(missing_ok=True)
    note = f"{plan.summary.describe()}{f' ({approval})' if approval else ''}"
    outputs = record_environment(tf, backend, request, note)
    return EnvironmentResult(
        service=service,
        environment=environment,
        plan=plan.summary.describe(),
        applied=plan.has_changes,
        approval=approval,
        outputs=outputs,
    )


@flow(name="destroy-environment", log_prints=False)
def destroy_environment(
    service: str, environment: str, approval_timeout_seconds: int = _DAY
) -> EnvironmentResult:
    """Destroy an environment's resources and forget it in the catalog.

    The destroy plan is published and, except for preview environments, needs
    an approval. State itself stays (empty) where the backend keeps it, so its
    history, e.g. the versions of an S3 bucket, outlives the environment.

    Args:
        service: A service in the catalog.
        environment: The environment to destroy, e.g. ``preview-fix-login``.
        approval_timeout_seconds: How long the destroy plan waits for an approval.
    """
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    module = environment_module(backend)
    ws = tf.workspace(module, service, environment)
    entry = Catalog.load_default().get(service)
    record = entry.outputs.get(environment)
    variables = (
        record.applied_variables() if record else resolve_variables(entry, environment, {}, module)
    )
    plan = plan_environment(tf, ws, variables, destroy=True)
    approval = ""
    if plan.has_changes:
        if not is_preview(environment):
            approval = await_approval(ws, plan, timeout=approval_timeout_seconds)
        apply_plan(tf, ws, plan)
    else:
        plan.plan_file.unlink(missing_ok=True)
    if record is not None:
        Catalog.load_default().update(
            service,
            lambda e: e.model_copy(
                update={"outputs": {k: v for k, v in e.outputs.items() if k != environment}}
            ),
            message=f"destroy {service}/{environment}: {plan.summary.describe()}",
        )
    tf.discard(ws)
    get_run_logger().info("%s/%s is destroyed", service, environment)
    return EnvironmentResult(
        service=service,
        environment=environment,
        plan=plan.summary.describe(),
        applied=plan.has_changes,
        approval=approval,
    )


@flow(name="expire-preview-environments", log_prints=False)
def expire_preview_environments() -> list[str]:
    """Destroy every preview environment whose ``expires_at`` has passed; returns them.

    One failure does not stop the others; the run fails at the end, naming each.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    due = []
    for entry in Catalog.load_default().entries():
        for environment in sorted(entry.outputs):
            record = entry.outputs[environment]
            expires = record.expires_at if is_preview(environment) else None
            if expires is not None and expires <= now:
                due.append((entry.name, environment, expires))
    rows: list[dict[str, str]] = []
    failed: list[tuple[str, SlipwayError]] = []
    for service, environment, expires in due:
        logger.info("%s/%s expired at %s", service, environment, expires.isoformat())
        try:
            destroy_environment(service, environment)
            outcome = "destroyed"
        except SlipwayError as e:
            failed.append((f"{service}/{environment}", e))
            outcome = f"failed: {e}"
        rows.append(
            {
                "service": service,
                "environment": environment,
                "expired": expires.isoformat(timespec="seconds"),
                "outcome": outcome,
            }
        )
    create_table_artifact(
        key="expired-preview-environments",
        table=rows,
        description=f"{len(rows)} preview environments past their TTL at {now:%Y-%m-%d %H:%M} UTC",
    )
    if failed:
        raise TerraformError(
            f"{len(failed)} expired preview environments could not be destroyed",
            diagnostics=[f"{name}: {error}" for name, error in failed],
            hint="fix the cause named for each; the next nightly run tries again",
        ) from failed[0][1]
    return [f"{service}/{environment}" for service, environment, _ in due]
