"""Drift detection: is every environment what Terraform and the last release say?

- `survey`: the check of every provisioned environment, in Terraform and on the engine;
- `runtime`: what runs on the deploy target, compared with what should;
- `reconcile`: undoing what is safe to undo;
- `report`: the ``drift-report`` table and the ``slipway.drift.detected`` events.
"""

from __future__ import annotations

from tasks.drift.reconcile import reconcile_environment, reconcile_environments
from tasks.drift.report import DRIFT_EVENT, conclude, publish_report
from tasks.drift.survey import (
    Engine,
    EnvironmentStatus,
    Target,
    check_environments,
    deploy_engine,
    merged,
    provisioned_targets,
    survey,
    targets,
)

__all__ = [
    "DRIFT_EVENT",
    "Engine",
    "EnvironmentStatus",
    "Target",
    "check_environments",
    "conclude",
    "deploy_engine",
    "merged",
    "provisioned_targets",
    "publish_report",
    "reconcile_environment",
    "reconcile_environments",
    "survey",
    "targets",
]
