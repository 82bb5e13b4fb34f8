"""A Terraform health assessment of one environment, as HCP Terraform runs them.

Two plans against the recorded variables, both with ``-detailed-exitcode``:

- ``plan -refresh-only``: exit 2 means the real objects drifted from state;
- a normal plan: exit 2 means state does not match the configuration (code
  or variables that were never applied, or state lost outside Slipway).

The normal plan is kept as a saved plan, so a reconcile applies exactly what
was reported and never a fresh plan. It runs first, and the refresh-only plan
only when that one cannot tell what it would say (`Terraform.check_plans`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tasks.terraform.inputs import Variables
from tasks.terraform.models import OutputValue, PlanResult, PriorState, ResourceChange
from tasks.terraform.workspace import Terraform, Workspace

__all__ = ["TerraformHealth", "assess"]


@dataclass(frozen=True)
class TerraformHealth:
    """What Terraform says about one environment."""

    resources: tuple[str, ...]
    """Addresses in state; empty when the environment has no state (never applied, or lost)."""
    outputs: Mapping[str, OutputValue]
    """The root module's outputs from state: what the environment is meant to run."""
    drift: tuple[ResourceChange, ...]
    """Resources whose real object no longer matches state (refresh-only plan)."""
    pending: PlanResult
    """The saved normal plan; ``has_changes`` means the configuration is not applied."""
    reasons: tuple[str, ...] = field(default=())
    """One line per finding, for the drift report; empty when in sync."""

    @property
    def in_sync(self) -> bool:
        """No drift and nothing to apply."""
        return not self.reasons

    @property
    def safe_to_apply(self) -> bool:
        """The pending plan changes something and destroys nothing, so a reconcile may apply it."""
        return self.pending.has_changes and not self.pending.summary.destroys


def assess(tf: Terraform, ws: Workspace, variables: Variables, *, name: str) -> TerraformHealth:
    """Run both plans of one environment and say what they found.

    Args:
        tf: Terraform on the environment's backend.
        ws: The environment's workspace.
        variables: The variables that were applied last (the catalog's record).
        name: A name for the saved plans that no concurrent run of this
            environment uses, e.g. ``drift-<flow run id>``.

    Raises:
        StateLocked: another run holds the environment's state lock.
        TerraformError: a plan failed, with Terraform's diagnostics.
    """
    refresh, pending = tf.check_plans(ws, variables, name=name)
    refresh.plan_file.unlink(missing_ok=True)  # only read; a refresh-only apply is never made
    prior = refresh.prior or PriorState()
    drift = refresh.summary.drift if refresh.has_changes else ()
    if not pending.has_changes:
        pending.plan_file.unlink(missing_ok=True)
    return TerraformHealth(
        resources=prior.resources,
        outputs=prior.outputs,
        drift=drift,
        pending=pending,
        reasons=tuple(_reasons(prior, drift, pending)),
    )


def _reasons(
    prior: PriorState, drift: tuple[ResourceChange, ...], pending: PlanResult
) -> list[str]:
    found = []
    if not prior.resources:
        found.append("Terraform state has no resources (destroyed or lost outside Slipway)")
    for change in drift:
        found.append(f"{change.address} changed outside Terraform ({', '.join(change.actions)})")
    if pending.has_changes and prior.resources:
        found.append(f"configuration not applied: {pending.summary.describe()}")
    return found
