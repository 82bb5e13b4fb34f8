"""The catalog, self-service: add an environment; keep teams, systems, APIs and relations.

Each flow is a form in the Prefect UI (its parameters are typed models with
descriptions) and a `slipway catalog` command; both start the same
deployment, so every change runs as a flow run with its creator, and lands
as one catalog commit that names it. A request is checked before anything
changes: an unknown service, a name Backstage refuses, an approver who is
not a member.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field

from slipway.errors import InvalidRequest
from slipway.names import EnvironmentName, ServiceName
from tasks.catalog import Catalog, CatalogEntry, update_entry
from tasks.catalog.entities import ApiEntity, GroupEntity, SystemEntity
from tasks.catalog.model import save_entity
from tasks.handoff import HandOff, hand_off

__all__ = [
    "EnvironmentRequest",
    "Relations",
    "add_environment",
    "set_api",
    "set_group",
    "set_relations",
    "set_system",
]

PROVISION = "provision-environment/provision-environment"


class EnvironmentRequest(BaseModel):
    """A new environment for a service, e.g. ``staging`` between dev and prod."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ServiceName = Field(title="Service", description="A service in the catalog.")
    environment: EnvironmentName = Field(
        title="Environment",
        description="A DNS-1123 label, e.g. staging. Previews come from pushing a branch instead.",
    )
    provision: bool = Field(
        default=True,
        title="Provision now",
        description="Start provision-environment for it once it is in the catalog.",
    )
    variables: dict[str, Any] = Field(
        default_factory=dict,
        title="Variables",
        description='Module variables for the provisioning, e.g. {"replicas": 2}.',
    )


class Relations(BaseModel):
    """How a service relates to the rest of the catalog."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ServiceName = Field(title="Service", description="A service in the catalog.")
    system: str = Field(default="", title="System", description="The System it is part of.")
    depends_on: tuple[str, ...] = Field(
        default=(),
        title="Depends on",
        description="Components and Resources it needs, e.g. component:billing.",
    )
    provides_apis: tuple[str, ...] = Field(default=(), title="Provides APIs")
    consumes_apis: tuple[str, ...] = Field(default=(), title="Consumes APIs")


def _report(key: str, title: str, lines: list[str]) -> None:
    create_markdown_artifact(
        key=key, markdown="\n".join([f"# {title}", "", *lines]), description=title
    )


@flow(name="add-environment", log_prints=False)
def add_environment(request: EnvironmentRequest) -> HandOff | None:
    """Add an environment to a service's catalog entry, then provision it.

    Re-running for an environment it has already only provisions it again.
    """
    if request.environment.is_preview:
        raise InvalidRequest(
            f"{request.environment} is a preview environment",
            hint="previews are made by pushing a branch; pick a name without 'preview-'",
        )
    entry = Catalog.load_default().get(request.service)
    if request.environment not in entry.environments:
        environments = [*entry.environments, str(request.environment)]
        update_entry(
            request.service,
            {"environments": environments},
            message=f"Add environment {request.environment} to {request.service}",
        )
    started = None
    if request.provision:
        parameters = {
            "service": str(request.service),
            "environment": str(request.environment),
            "variables": request.variables,
        }
        started = hand_off(PROVISION, parameters)
    _report(
        f"environment-{request.service}-{request.environment}",
        f"{request.service} has {request.environment}",
        [f"Provisioning: {started.describe() if started else 'not requested'}"],
    )
    return started


@flow(name="set-group", log_prints=False)
def set_group(group: GroupEntity) -> str | None:
    """Add or change a team: its members, and which of them approve production changes."""
    return save_entity(group)


@flow(name="set-system", log_prints=False)
def set_system(system: SystemEntity) -> str | None:
    """Add or change a System; services join it with set-relations."""
    return save_entity(system)


@flow(name="set-api", log_prints=False)
def set_api(api: ApiEntity) -> str | None:
    """Add or change an API and its definition; services provide it with set-relations."""
    return save_entity(api)


@flow(name="set-relations", log_prints=False)
def set_relations(relations: Relations) -> CatalogEntry:
    """Set a service's System, dependencies and APIs (partOf, dependsOn, providesApi, consumesApi).

    Relations to entities not in the catalog are kept, and `slipway catalog
    validate` names them, so a service may be related before its peer exists.
    """
    changes = relations.model_dump(exclude={"service"})
    return update_entry(relations.service, changes, message=f"Relate {relations.service}")
