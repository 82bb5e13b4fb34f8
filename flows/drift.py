"""Nightly drift detection: is every environment what Terraform and the last release say?

Every environment that the catalog records as provisioned is checked in
Terraform (``plan -refresh-only``, and a plan of the recorded variables) and
against what runs on the deploy target (`tasks.drift`). Each is ``InSync``,
``OutOfSync`` (with reasons) or ``Unknown`` (the check itself failed). One
``drift-report`` table artifact lists them all; each OutOfSync environment
emits a ``slipway.drift.detected`` event for automations. With ``reconcile``,
what is safe is undone (`tasks.drift.reconcile`) and the environment checked
again.
"""

from __future__ import annotations

from prefect import flow

from blocks.terraform_backend import TerraformBackend
from slipway.home import SlipwayHome
from tasks.drift import (
    DRIFT_EVENT,
    EnvironmentStatus,
    check_environments,
    conclude,
    deploy_engine,
    merged,
    provisioned_targets,
    publish_report,
    reconcile_environments,
)
from tasks.terraform import environment_module, open_terraform

__all__ = ["DRIFT_EVENT", "EnvironmentStatus", "detect_drift"]


@flow(name="detect-drift", log_prints=False)
def detect_drift(reconcile: bool = False, max_parallel: int = 4) -> list[EnvironmentStatus]:
    """Check every provisioned environment against Terraform and against what runs.

    Args:
        reconcile: Undo what is safe to undo (see `tasks.drift.reconcile`), then check again.
        max_parallel: Environments checked at once; each Terraform command is its own process.
    """
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    checks, never = provisioned_targets(tf, environment_module(backend))
    engine = deploy_engine()
    detected = check_environments(tf, engine.client, checks, max_parallel)
    final = detected
    if reconcile:
        final = reconcile_environments(
            tf, backend, engine.client, checks, detected, max_parallel, engine.target
        )
    detected, final = merged(never + detected), merged(never + final)
    publish_report(detected, final)
    return conclude(final, engine.unreachable)
