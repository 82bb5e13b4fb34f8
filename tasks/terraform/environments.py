"""Slipway's environments on top of Terraform: which module, which variables, what is kept.

An environment is one Terraform workspace per service and environment name,
built from the environment module (the block's ``module``, else
``infra/modules/local-docker-env``). What provisioning applied is kept in the
catalog entry's ``outputs[environment]`` (`tasks.catalog.EnvironmentRecord`),
so that drift checks and later runs can plan the same variables again on any
machine: every module output, the variables that were applied, where
Terraform keeps the state and, for a preview, when it expires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError, InvalidRequest
from slipway.names import PREVIEW_PREFIX, EnvironmentName, is_preview, preview_environment
from tasks.catalog.entry import EnvironmentOutputs, EnvironmentRecord
from tasks.terraform.config import render_backend
from tasks.terraform.inputs import Variables, check_variables, declared_variables
from tasks.terraform.models import OutputValue
from tasks.terraform.workspace import Terraform, Workspace

if TYPE_CHECKING:
    from blocks.terraform_backend import TerraformBackend
    from slipway.home import SlipwayHome
    from tasks.catalog import CatalogEntry

__all__ = [
    "BUNDLED_MODULE",
    "PREVIEW_PREFIX",
    "environment_module",
    "is_preview",
    "open_terraform",
    "preview_environment",
    "record_outputs",
    "resolve_variables",
    "state_location",
]

BUNDLED_MODULE = Path(__file__).resolve().parents[2] / "infra" / "modules" / "local-docker-env"
"""The module for the local Docker deploy target, in Slipway's own checkout."""


_SET_BY_FLOW = ("service", "environment")


def environment_module(backend: TerraformBackend) -> Path:
    """The module that environments are built from, known to exist."""
    module = backend.module or BUNDLED_MODULE
    if not module.is_dir() or not any(module.glob("*.tf")):
        raise ConfigurationError(
            f"the environment module {module} has no .tf files",
            hint="set `module` of the slipway-terraform-backend block to a Terraform module directory",
        )
    return module


def open_terraform(backend: TerraformBackend, home: SlipwayHome) -> Terraform:
    """Terraform on the block's backend, with workspaces under the data directory."""
    return Terraform(backend, workspaces=home.terraform / "workspaces")


def state_location(backend: TerraformBackend, ws: Workspace) -> str:
    """Where the environment's state is, for people: a path or an ``s3://`` URL."""
    config = dict(render_backend(backend, ws.service, ws.environment).settings)
    if backend.kind == "local":
        return str(config["path"])
    return f"s3://{config['bucket']}/{config['key']}"


def resolve_variables(
    entry: CatalogEntry, environment: str, variables: Variables, module: Path
) -> dict[str, object]:
    """The variables to plan: the service's name, environment and port, then the caller's.

    Refuses, before any Terraform runs: an environment that the service does
    not have (previews excepted), ``service`` or ``environment`` among the
    variables, and any variable that the module does not declare or that has
    the wrong type.

    Raises:
        InvalidRequest: naming the rule that was broken.
    """
    environment = EnvironmentName.parse(environment)
    if environment not in entry.environments and not is_preview(environment):
        known = ", ".join(entry.environments) or "none"
        raise InvalidRequest(
            f"{entry.name} has no environment {environment!r} (it has: {known})",
            hint=f"add it: `slipway catalog add-environment {entry.name} {environment}` (or the add-environment deployment), or use preview-<branch>",
        )
    for name in _SET_BY_FLOW:
        if name in variables:
            raise InvalidRequest(
                f"variable {name!r} is set by Slipway", hint=f"pass {name} as the flow's parameter"
            )
    resolved: dict[str, object] = {
        "service": entry.name,
        "environment": environment,
        "port": entry.port,
        **variables,
    }
    check_variables(resolved, declared_variables(module))
    return resolved


def record_outputs(
    outputs: Mapping[str, OutputValue],
    variables: Variables,
    *,
    state: str,
    expires_at: datetime | None = None,
) -> EnvironmentRecord:
    """The catalog's record of an environment: its outputs, typed; sensitive ones only named."""
    found = EnvironmentOutputs.of(
        {name: out.value for name, out in outputs.items()},
        sensitive=[name for name, out in outputs.items() if out.sensitive],
    )
    return EnvironmentRecord(
        **dict(found),
        variables=json.loads(json.dumps(dict(variables))),  # as JSON keeps them
        state=state,
        expires_at=expires_at.astimezone(UTC).replace(microsecond=0) if expires_at else None,
    )
