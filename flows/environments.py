"""Environments with Terraform: plan, show the plan, approve when it matters, apply that plan.

The Atlantis loop, as Prefect flows:

1. the request is checked (service in the catalog, environment, variables and
   their types) before any Terraform command runs;
2. the environment's workspace is rendered and planned to a saved plan file;
3. a ``plan-<service>-<environment>`` artifact lists each resource's action;
4. a plan that destroys anything, or any plan for ``prod``, pauses the run for
   an approval form in the UI;
5. the saved plan is applied, never a fresh one: Terraform refuses it if state
   moved in between;
6. the outputs are kept in the catalog entry (``outputs[environment]``).

Preview environments (``preview-<branch>``) carry an ``expires_at``;
`expire_preview_environments` destroys those past it, nightly, without approval.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from blocks.terraform_backend import TerraformBackend
from slipway.errors import SlipwayError, TerraformError
from slipway.home import SlipwayHome
from slipway.names import EnvironmentName, ServiceName
from tasks.catalog import EnvironmentRecord
from tasks.terraform import PlanResult, Workspace, is_preview, open_terraform
from tasks.terraform.provisioning import (
    apply_plan,
    approve_plan,
    check_destroy_request,
    check_environment_request,
    expired_previews,
    forget_environment,
    plan_environment,
    record_environment,
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

_DEV = EnvironmentName.parse("dev")
_DAY = 24 * 3600


class EnvironmentResult(BaseModel):
    """What a provision or destroy run did."""

    service: ServiceName
    environment: EnvironmentName
    plan: str = Field(description="Terraform's count: 'N to add, N to change, N to destroy'.")
    applied: bool = Field(description="Whether a plan was applied (False: nothing to do).")
    approval: str = Field(default="", description="'approved: <comment>', or empty if none.")
    outputs: EnvironmentRecord | None = Field(
        default=None, description="What the catalog keeps of it now; None once destroyed."
    )

    @classmethod
    def of(
        cls, ws: Workspace, plan: PlanResult, approval: str, outputs: EnvironmentRecord | None
    ) -> EnvironmentResult:
        """The result of a run that planned ``plan`` for the workspace ``ws``."""
        return cls(
            service=ws.service,
            environment=ws.environment,
            plan=plan.summary.describe(),
            applied=plan.has_changes,
            approval=approval,
            outputs=outputs,
        )


@flow(name="provision-environment", log_prints=False)
def provision_environment(
    service: ServiceName,
    environment: EnvironmentName = _DEV,
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
    request = check_environment_request(
        tf, backend, service, environment, variables or {}, ttl_hours
    )
    plan = plan_environment(tf, backend, request)
    approval = ""
    if plan.has_changes and (plan.summary.destroys or environment in APPROVAL_ENVIRONMENTS):
        approval = approve_plan(request.ws, plan, timeout=approval_timeout_seconds)
    apply_plan(tf, request.ws, plan)
    note = f"{plan.summary.describe()}{f' ({approval})' if approval else ''}"
    record = record_environment(tf, backend, request, note)
    return EnvironmentResult.of(request.ws, plan, approval, record)


@flow(name="destroy-environment", log_prints=False)
def destroy_environment(
    service: ServiceName, environment: EnvironmentName, approval_timeout_seconds: int = _DAY
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
    request = check_destroy_request(tf, backend, service, environment)
    plan = plan_environment(tf, backend, request, destroy=True)
    approval = ""
    if plan.has_changes and not is_preview(environment):
        approval = approve_plan(request.ws, plan, timeout=approval_timeout_seconds)
    apply_plan(tf, request.ws, plan)
    forget_environment(tf, request, plan.summary.describe())
    get_run_logger().info("%s/%s is destroyed", service, environment)
    return EnvironmentResult.of(request.ws, plan, approval, None)


@flow(name="expire-preview-environments", log_prints=False)
def expire_preview_environments() -> list[str]:
    """Destroy every preview environment whose ``expires_at`` has passed; returns them.

    One failure does not stop the others; the run fails at the end, naming each.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    due = expired_previews(now)
    rows: list[dict[str, str]] = []
    failed: list[tuple[str, SlipwayError]] = []
    for preview in due:
        name = f"{preview.service}/{preview.environment}"
        logger.info("%s expired at %s", name, preview.expired_at.isoformat())
        try:
            destroy_environment(preview.service, preview.environment)
            outcome = "destroyed"
        except SlipwayError as e:
            failed.append((name, e))
            outcome = f"failed: {e}"
        rows.append(
            {
                "service": preview.service,
                "environment": preview.environment,
                "expired": preview.expired_at.isoformat(timespec="seconds"),
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
    return [f"{p.service}/{p.environment}" for p in due]
