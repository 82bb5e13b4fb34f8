"""Onboarding's steps: the request form, its check, the template, and the steps that undo themselves.

Creating the repository, registering the catalog entry and pushing the first
commit run in one Prefect transaction (`prefect.transactions.transaction`):
when a step fails, the steps before it are rolled back by their
``on_rollback`` hooks, so a failed onboarding leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import yaml
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.transactions import BaseTransaction, Transaction, get_transaction
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from blocks.deploy_target import DeployTarget
from blocks.git_server import GitServer
from blocks.platform import PlatformSettings
from slipway.errors import InvalidRequest, SlipwayError
from slipway.home import Ports, SlipwayHome
from slipway.names import EnvironmentName, ServiceName
from slipway.run_log import run_logger
from tasks.catalog import Catalog, CatalogEntry, catalog_rows
from tasks.git import (
    create_repository,
    delete_repository,
    head_commit,
    platform_push_hook,
    publish_directory,
    repository_exists,
    repository_url,
)
from tasks.handoff import HandOff
from tasks.templates import (
    ANSWERS_FILE,
    ServiceAnswers,
    TemplateRelease,
    available_templates,
    check_description,
    check_owner,
    render_service,
)

__all__ = [
    "OnboardingResult",
    "ServiceRequest",
    "check_onboarding_request",
    "create_service_repository",
    "push_first_commit",
    "register",
    "render_template",
    "report_onboarding",
]


class ServiceRequest(BaseModel):
    """What a developer asks for when they onboard a service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ServiceName = Field(
        title="Service name",
        description="A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters. Also the repository's name.",
    )
    owner: Annotated[str, AfterValidator(check_owner)] = Field(
        title="Owner",
        description="The owning team, as a Backstage entity reference, e.g. group:payments.",
    )
    description: Annotated[str, AfterValidator(check_description)] = Field(
        default="",
        max_length=500,
        title="Description",
        description="What the service does, in one or two sentences.",
    )
    template: str = Field(
        default="python-service",
        title="Template",
        description="The golden-path template to start from (a directory under templates/).",
    )
    environments: tuple[EnvironmentName, ...] = Field(
        default=(EnvironmentName.parse("dev"),),
        min_length=1,
        title="Environments",
        description="The environments to create, each a DNS-1123 label. The first one gets the first deploy.",
    )
    port: int | None = Field(
        default=None,
        title="Port",
        description="The port the service listens on. Empty: the next free one in the deploy target's range.",
    )


class OnboardingResult(BaseModel):
    """What an onboarding made or found, for the caller and the run's artifact."""

    model_config = ConfigDict(frozen=True)

    name: ServiceName
    repository: str
    port: int
    template: str
    template_version: str
    dry_run: bool
    files: tuple[str, ...]
    commit: str | None = None
    catalog_commit: str | None = None
    created: bool = False
    handoffs: tuple[HandOff, ...] = ()

    def catalog_entry(self, request: ServiceRequest) -> CatalogEntry:
        """The catalog entry that onboarding ``request`` registers."""
        return CatalogEntry(
            name=self.name,
            description=request.description,
            owner=request.owner,
            repository=self.repository,
            port=self.port,
            environments=request.environments,
            template=self.template,
            template_version=self.template_version,
        )


@task(name="check-request")
def check_onboarding_request(
    request: ServiceRequest, server: GitServer, target: DeployTarget
) -> int:
    """Refuse a request that cannot be onboarded, before anything is created; returns the port.

    The name must be free, or taken by this same service (same owner and
    template: a re-run). The port must be in the deploy target's range and
    not another service's.
    """
    if request.template not in (templates := available_templates()):
        raise InvalidRequest(
            f"unknown template {request.template!r}",
            hint=f"use one of: {', '.join(templates) or '(none installed)'}",
        )
    entries = Catalog(server).entries()
    existing = next((e for e in entries if e.name == request.name), None)
    if existing is not None and (existing.owner, existing.template) != (
        request.owner,
        request.template,
    ):
        raise InvalidRequest(
            f"the name {request.name!r} is taken by {existing.owner} "
            f"({existing.template}); a service name must be unique in the catalog",
            hint="choose another name, or onboard with the same owner and template to update it",
        )
    if existing is None and repository_exists(server, request.name):
        raise InvalidRequest(
            f"a repository {request.name!r} exists on the git server but is not in the catalog",
            hint="choose another name, or remove or register that repository first",
        )
    taken = {e.port: e.name for e in entries if e.name != request.name}
    if request.port is not None:
        return _requested_port(request.port, taken, target)
    if existing is not None:
        return existing.port
    for port in range(target.port_range_start, target.port_range_end + 1):
        if port not in taken:
            return port
    raise InvalidRequest(
        f"every port of {target.port_range_start}-{target.port_range_end} is taken",
        hint="widen the range in the slipway-deploy-target block",
    )


def _requested_port(port: int, taken: Mapping[int, str], target: DeployTarget) -> int:
    """``port``, if it is in the deploy target's range and no other service's."""
    if not target.port_in_range(port):
        raise InvalidRequest(
            f"port {port} is outside the deploy target's range "
            f"{target.port_range_start}-{target.port_range_end}",
            hint="leave the port empty to get a free one, or pick one in the range",
        )
    if port in taken:
        raise InvalidRequest(
            f"port {port} is already {taken[port]}'s", hint="leave the port empty to get a free one"
        )
    return port


@task(name="render-template")
def render_template(
    request: ServiceRequest,
    server: GitServer,
    port: int,
    destination: Path,
    release: TemplateRelease | None,
) -> OnboardingResult:
    """Render the template with the request's answers; what onboarding would make of it."""
    settings = PlatformSettings.load_default()
    answers = ServiceAnswers(
        service_name=request.name,
        description=request.description,
        owner=request.owner,
        port=port,
        environments=request.environments,
        base_image=settings.base_image,
        infra_module_source=f"git::file://{server.root}/platform-infra.git//modules/local-docker-env",
    )
    rendered = render_service(request.template, destination, answers, release=release)
    answered = yaml.safe_load((destination / ANSWERS_FILE).read_text())
    return OnboardingResult(
        name=request.name,
        repository=repository_url(server, request.name),
        port=port,
        template=request.template,
        template_version=str(answered.get("template_version", "")),
        dry_run=True,
        files=tuple(str(f) for f in rendered.files),
    )


# -- the steps that undo themselves --------------------------------------------


@task(name="create-repository", retries=2, retry_delay_seconds=1)
def create_service_repository(server: GitServer, name: ServiceName) -> str:
    """The service's bare repository, with the hook that tells the bridge about pushes."""
    created = not repository_exists(server, name)
    home, ports = SlipwayHome.from_env(), Ports.from_env()
    path = create_repository(server, name, hook=platform_push_hook(home, ports))
    _transaction().set("created_repository", name if created else None)
    return str(path)


@create_service_repository.on_rollback
def _remove_new_repository(txn: Transaction) -> None:
    name = txn.get("created_repository", None)
    if name:
        delete_repository(GitServer.load_default(), name)
        run_logger(__name__).warning("rolled back: removed repository %s", name)


@task(name="register-in-catalog", retries=2, retry_delay_seconds=1)
def register(server: GitServer, entry: CatalogEntry) -> str | None:
    """Add or update the catalog entry; returns the catalog commit, or None when unchanged."""
    catalog = Catalog(server)
    previous = catalog.find(entry.name)
    if previous is not None:
        # A re-run keeps what other flows recorded since (e.g. environment outputs).
        entry = entry.model_copy(update={"outputs": previous.outputs})
    verb = "Onboard" if previous is None else "Update"
    sha = catalog.save(entry, message=f"{verb} {entry.name} (owner {entry.owner})")
    _transaction().set("previous_entry", (entry.name, previous))
    return sha


@register.on_rollback
def _restore_catalog(txn: Transaction) -> None:
    name, previous = txn.get("previous_entry")
    catalog = Catalog(GitServer.load_default())
    if previous is None:
        catalog.remove(name, message=f"Roll back the onboarding of {name}")
    else:
        catalog.save(previous, message=f"Roll back the update of {name}")
    run_logger(__name__).warning("rolled back: catalog entry of %s", name)


@task(name="push-first-commit", retries=2, retry_delay_seconds=1)
def push_first_commit(server: GitServer, name: ServiceName, source: Path) -> tuple[str, bool]:
    """Push the rendered service as the first commit; a re-run keeps the code already there.

    Returns the tip of the default branch and whether this push made it.
    """
    current = head_commit(server, name)
    if current is not None:
        run_logger(__name__).info("%s already has commits; its code is left as it is", name)
        return current, False
    return publish_directory(
        server, name, source, message=f"Onboard {name} from its template"
    ), True


def _transaction() -> BaseTransaction:
    """The open transaction; the steps that undo themselves only run inside one."""
    txn = get_transaction()
    if txn is None:
        raise SlipwayError("this step must run inside the onboarding transaction")
    return txn


# -- the report ------------------------------------------------------------------


@task(name="report-onboarding")
def report_onboarding(result: OnboardingResult, server: GitServer) -> OnboardingResult:
    """The ``onboarding-<service>`` artifact and, after a real onboarding, the catalog's table."""
    create_markdown_artifact(
        key=f"onboarding-{result.name}",
        markdown=_markdown(result),
        description=f"Onboarding of {result.name}",
    )
    logger = run_logger(__name__)
    if result.dry_run:
        logger.info("dry run: %s would be onboarded on port %d", result.name, result.port)
        return result
    create_table_artifact(
        key="service-catalog",
        table=catalog_rows(Catalog(server).entries()),
        description=f"The service catalog after onboarding {result.name}",
    )
    logger.info("%s onboarded at %s (%s)", result.name, str(result.commit)[:12], result.repository)
    return result


def _markdown(result: OnboardingResult) -> str:
    lines = [
        f"# {'Dry run: ' if result.dry_run else ''}{result.name}",
        "",
        "| | |",
        "|---|---|",
        f"| Repository | `{result.repository}` |",
        f"| Clone | `git clone {result.repository}` |",
        f"| Catalog entry | `platform-catalog/{result.name}/catalog-info.yaml`"
        + (f" at `{result.catalog_commit[:12]}`" if result.catalog_commit else "")
        + " |",
        f"| Port | {result.port} |",
        f"| Template | {result.template} {result.template_version} |",
    ]
    if result.commit:
        lines.append(f"| First commit | `{result.commit[:12]}` |")
    if result.handoffs:
        lines += ["", "## Next steps started", ""]
        lines += [f"- {h.describe()}" for h in result.handoffs]
    if result.dry_run:
        lines += ["", "## Files the template would write", ""]
        lines += [f"- `{f}`" for f in result.files]
    return "\n".join(lines)
