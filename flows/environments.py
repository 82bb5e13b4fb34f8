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

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.git_server import GitServer
from blocks.platform import PlatformSettings
from blocks.terraform_backend import TerraformBackend
from slipway.errors import GateRefused, InvalidRequest, SlipwayError, TerraformError
from slipway.home import SlipwayHome
from slipway.names import GitRef
from tasks.actors import run_creator
from tasks.approvals import ApprovalRequest, group_approvers
from tasks.approvals import await_approval as wait_for_approver
from tasks.catalog import Catalog, CatalogEntry
from tasks.release_history import deploy_slot
from tasks.secret_env import check_secret_references
from tasks.terraform import (
    EnvironmentRecord,
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
    "EnvironmentResult",
    "destroy_environment",
    "expire_preview_environments",
    "provision_environment",
]

APPROVAL_ENVIRONMENTS = frozenset({"prod"})
"""Environments whose every plan needs an approval, destroying or not."""
PREVIEW_SLOT = "previews"
"""The release slot (`deploy_slot`) that one service's preview provisioning holds."""

_APPROVAL_POLL_SECONDS = 2
_DAY = 24 * 3600


class EnvironmentResult(BaseModel):
    """What a provision or destroy run did."""

    service: str
    environment: str
    plan: str = Field(description="Terraform's count: 'N to add, N to change, N to destroy'.")
    applied: bool = Field(description="Whether a plan was applied (False: nothing to do).")
    approval: str = Field(default="", description="'approved: <comment>', or empty if none.")
    outputs: dict[str, str] = Field(default_factory=dict, description="As kept in the catalog.")


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
    check_secret_references(resolved)  # names of existing Secret blocks, never values
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


def await_approval(
    ws: Workspace, entry: CatalogEntry, plan: PlanResult, requester: str, *, timeout: int
) -> str:
    """Pause the run until an approver of the service's group approves or rejects the plan.

    The requester may not approve their own plan (`tasks.approvals`). The
    saved plan is deleted when it will not be applied.

    Raises:
        GateRefused: rejected, nobody may approve, or no approval within ``timeout`` seconds.
    """
    title = f"Approve the plan of {ws.service} in {ws.environment}?"
    request = ApprovalRequest(
        service=ws.service,
        environment=ws.environment,
        kind="plan",
        subject=plan.summary.describe(),
        description=plan_markdown(title, plan.summary)
        + "\n\nGive your approver name and token, tick *Approve* (or not, to reject) and resume.",
        approvers=group_approvers(GitServer.load_default(), entry),
        authors=frozenset({requester} - {"", "manual"}),
    )
    try:
        record = wait_for_approver(request, timeout=timeout, poll=_APPROVAL_POLL_SECONDS)
    except GateRefused:
        plan.plan_file.unlink(missing_ok=True)
        raise
    return f"approved by {record.approver}: {record.reason}".rstrip(": ")


@task(name="apply-plan", cache_policy=NO_CACHE)
def apply_plan(tf: Terraform, ws: Workspace, plan: PlanResult) -> None:
    """Apply exactly the saved plan; a failure carries Terraform's diagnostics."""
    tf.apply(ws, plan)


@task(name="record-environment", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_environment(
    tf: Terraform, backend: TerraformBackend, request: _Request, note: str
) -> dict[str, str]:
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


@task(name="check-preview-policy", cache_policy=NO_CACHE)
def check_preview(entry: CatalogEntry, environment: str, branch: str | None) -> None:
    """Refuse a preview of a branch that does not qualify, or one more than the service may have."""
    live = {
        name: EnvironmentRecord(values).expires_at()
        for name, values in entry.outputs.items()
        if is_preview(name)
    }
    policy = PlatformSettings.load_default().preview_policy()
    policy.check(entry.name, environment, live, branch=branch, now=datetime.now(UTC))


@flow(name="provision-environment", log_prints=False)
def provision_environment(
    service: str,
    environment: str = "dev",
    variables: dict[str, Any] | None = None,
    ttl_hours: float = 72,
    approval_timeout_seconds: int = _DAY,
    branch: str = "",
    triggered_by: str = "",
) -> EnvironmentResult:
    """Create or change a service's environment: plan, approval when needed, apply, record.

    A preview is checked against the platform's preview policy first (which
    branches, how many live); previews of one service are provisioned one at
    a time, so two pushes cannot both take the last place.

    Args:
        service: A service in the catalog.
        environment: One of the service's environments, or ``preview-<branch>``.
        variables: Module variables, e.g. ``{"replicas": 2, "env_vars": {"MODE": "x"}}``;
            ``service``, ``environment`` and (by default) ``port`` come from the catalog.
        ttl_hours: How long a preview environment lives; ignored for others.
        approval_timeout_seconds: How long a plan that needs approval waits for one.
        branch: The pushed branch whose preview this is (set by the push trigger).
        triggered_by: Who asked: the pusher, for a push; recorded with the change.
    """
    preview = is_preview(environment)
    with deploy_slot(service, PREVIEW_SLOT) if preview else contextlib.nullcontext():
        return _provision(
            service,
            environment,
            variables or {},
            ttl_hours,
            approval_timeout_seconds,
            branch=branch,
            triggered_by=triggered_by or run_creator(),
        )


def _provision(
    service: str,
    environment: str,
    variables: dict[str, Any],
    ttl_hours: float,
    approval_timeout_seconds: int,
    *,
    branch: str,
    triggered_by: str,
) -> EnvironmentResult:
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    request = check_request(tf, backend, service, environment, variables, ttl_hours)
    if is_preview(environment):
        check_preview(request.entry, environment, GitRef.parse(branch) if branch else None)
    ensure_state_bucket(backend)  # S3 only: created with versioning when missing
    plan = plan_environment(tf, request.ws, request.variables)
    approval = ""
    if plan.has_changes:
        if plan.summary.destroys or environment in APPROVAL_ENVIRONMENTS:
            approval = await_approval(
                request.ws, request.entry, plan, triggered_by, timeout=approval_timeout_seconds
            )
        apply_plan(tf, request.ws, plan)
    else:
        plan.plan_file.unlink(missing_ok=True)
    note = f"{plan.summary.describe()}{f' ({approval})' if approval else ''}, by {triggered_by}"
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
    service: str, environment: str, approval_timeout_seconds: int = _DAY, triggered_by: str = ""
) -> EnvironmentResult:
    """Destroy an environment's resources and forget it in the catalog.

    The destroy plan is published and, except for preview environments, needs
    an approval. State itself stays (empty) where the backend keeps it, so its
    history, e.g. the versions of an S3 bucket, outlives the environment.

    Args:
        service: A service in the catalog.
        environment: The environment to destroy, e.g. ``preview-fix-login``.
        approval_timeout_seconds: How long the destroy plan waits for an approval.
        triggered_by: Who asked; they may not approve it.
    """
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    module = environment_module(backend)
    ws = tf.workspace(module, service, environment)
    entry = Catalog.load_default().get(service)
    record = EnvironmentRecord.of(entry, environment)
    variables = record.variables() if record else resolve_variables(entry, environment, {}, module)
    plan = plan_environment(tf, ws, variables, destroy=True)
    approval = ""
    if plan.has_changes:
        if not is_preview(environment):
            approval = await_approval(
                ws, entry, plan, triggered_by or run_creator(), timeout=approval_timeout_seconds
            )
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
            record = EnvironmentRecord(entry.outputs[environment])
            expires = record.expires_at() if is_preview(environment) else None
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
