"""Onboard a service: template, repository, catalog entry, then environments, first deploy, docs.

The platform's front door, after Backstage's scaffolder (``fetch:template`` →
``publish`` → ``catalog:register``), with two things its users ask for:

* **Re-running updates rather than failing.** The same request again finds the
  repository and the entry it made last time, keeps the service's code, and
  brings the entry up to date. A request from a different owner or for a
  different template is refused: the name is taken.
* **A failed onboarding leaves nothing behind.** Creating the repository,
  registering the entry and pushing the first commit run in one Prefect
  transaction; when a step fails, the steps before it are rolled back.

The order matters: the entry is registered before the first push, so the
webhook bridge, which only starts pipelines for catalogued services, starts
the first build-test-deploy from that push.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.transactions import BaseTransaction, Transaction, get_transaction, transaction
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from blocks.deploy_target import DeployTarget
from blocks.git_server import GitServer
from blocks.platform import PlatformSettings
from slipway.errors import InvalidRequest, SlipwayError
from slipway.home import Ports, SlipwayHome
from slipway.names import check_dns_label
from tasks.catalog import Catalog, CatalogEntry, catalog_rows
from tasks.catalog_model import ensure_owner_group
from tasks.git import (
    create_repository,
    delete_repository,
    head_commit,
    platform_push_hook,
    publish_directory,
    repository_exists,
    repository_url,
)
from tasks.handoff import HandOff, hand_off
from tasks.templates import (
    ServiceAnswers,
    TemplateRelease,
    available_templates,
    check_description,
    check_owner,
    publish_template,
    render_service,
)

__all__ = ["OnboardingResult", "ServiceRequest", "onboard_service"]


def _service_name(value: str) -> str:
    return check_dns_label(value, what="service name")


def _environment(value: str) -> str:
    return check_dns_label(value, what="environment")


class ServiceRequest(BaseModel):
    """What a developer asks for when they onboard a service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, AfterValidator(_service_name)] = Field(
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
    environments: tuple[Annotated[str, AfterValidator(_environment)], ...] = Field(
        default=("dev",),
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

    name: str
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


# -- steps ---------------------------------------------------------------


@task(name="check-request")
def check_request(request: ServiceRequest, server: GitServer, target: DeployTarget) -> int:
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
    catalog = Catalog(server)
    entries = catalog.entries()
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
        if not target.port_in_range(request.port):
            raise InvalidRequest(
                f"port {request.port} is outside the deploy target's range "
                f"{target.port_range_start}-{target.port_range_end}",
                hint="leave the port empty to get a free one, or pick one in the range",
            )
        if request.port in taken:
            raise InvalidRequest(
                f"port {request.port} is already {taken[request.port]}'s",
                hint="leave the port empty to get a free one",
            )
        return request.port
    if existing is not None:
        return existing.port
    for port in range(target.port_range_start, target.port_range_end + 1):
        if port not in taken:
            return port
    raise InvalidRequest(
        f"every port of {target.port_range_start}-{target.port_range_end} is taken",
        hint="widen the range in the slipway-deploy-target block",
    )


@task(name="publish-template", retries=2, retry_delay_seconds=1)
def release_template(server: GitServer, template: str) -> TemplateRelease:
    """The template's current version as a tagged repository, so `copier update` works later."""
    return publish_template(server, template)


@task(name="render-template")
def render(
    request: ServiceRequest,
    port: int,
    destination: Path,
    release: TemplateRelease | None,
) -> tuple[str, ...]:
    """Render the template with the request's answers; returns the files written."""
    settings = PlatformSettings.load_default()
    server = GitServer.load_default()
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
    return tuple(str(f) for f in rendered.files)


@task(name="create-repository", retries=2, retry_delay_seconds=1)
def create_service_repository(server: GitServer, name: str) -> str:
    """The service's bare repository, with the hook that tells the bridge about pushes."""
    created = not repository_exists(server, name)
    home, ports = SlipwayHome.from_env(), Ports.from_env()
    path = create_repository(server, name, hook=platform_push_hook(home, ports))
    get_transaction_or_fail().set("created_repository", name if created else None)
    return str(path)


@create_service_repository.on_rollback
def _remove_new_repository(txn: Transaction) -> None:
    name = txn.get("created_repository", None)
    if name:
        delete_repository(GitServer.load_default(), name)
        get_run_logger().warning("rolled back: removed repository %s", name)


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
    get_transaction_or_fail().set("previous_entry", (entry.name, previous))
    return sha


@register.on_rollback
def _restore_catalog(txn: Transaction) -> None:
    name, previous = txn.get("previous_entry")
    catalog = Catalog(GitServer.load_default())
    if previous is None:
        catalog.remove(name, message=f"Roll back the onboarding of {name}")
    else:
        catalog.save(previous, message=f"Roll back the update of {name}")
    get_run_logger().warning("rolled back: catalog entry of %s", name)


@task(name="push-first-commit", retries=2, retry_delay_seconds=1)
def push_first_commit(server: GitServer, name: str, source: Path) -> tuple[str, bool]:
    """Push the rendered service as the first commit; a re-run keeps the code already there.

    Returns the tip of the default branch and whether this push made it.
    """
    current = head_commit(server, name)
    if current is not None:
        get_run_logger().info("%s already has commits; its code is left as it is", name)
        return current, False
    return publish_directory(
        server, name, source, message=f"Onboard {name} from its template"
    ), True


def get_transaction_or_fail() -> BaseTransaction:
    """The open transaction; the steps that undo themselves only run inside one."""
    txn = get_transaction()
    if txn is None:
        raise SlipwayError("this step must run inside the onboarding transaction")
    return txn


# -- the flow --------------------------------------------------------------


@flow(name="onboard-service", log_prints=False)
def onboard_service(request: ServiceRequest, dry_run: bool = False) -> OnboardingResult:
    """Create a service from a template: repository, catalog entry, environments, first deploy, docs.

    With ``dry_run`` it checks the request and renders the template, and
    creates nothing.
    """
    logger = get_run_logger()
    server = GitServer.load_default()
    target = DeployTarget.load_default()
    port = check_request(request, server, target)
    release = None if dry_run else release_template(server, request.template)
    with tempfile.TemporaryDirectory(prefix=f"slipway-onboard-{request.name}-") as scratch:
        source = Path(scratch) / request.name
        files = render(request, port, source, release)
        version = _rendered_version(source)
        clone_url = repository_url(server, request.name)
        if dry_run:
            result = OnboardingResult(
                name=request.name,
                repository=clone_url,
                port=port,
                template=request.template,
                template_version=version,
                dry_run=True,
                files=files,
            )
            _report(result)
            logger.info("dry run: %s would be onboarded on port %d", request.name, port)
            return result
        entry = CatalogEntry(
            name=request.name,
            description=request.description,
            owner=request.owner,
            repository=clone_url,
            port=port,
            environments=request.environments,
            template=request.template,
            template_version=version,
        )
        with transaction():
            repository = create_service_repository(server, request.name)
            ensure_owner_group(server, request.owner, request.name)  # a note when it was missing
            catalog_commit = register(server, entry)
            commit, created = push_first_commit(server, request.name, source)
    handoffs = _hand_off(request, commit, pushed=created)
    result = OnboardingResult(
        name=request.name,
        repository=repository,
        port=port,
        template=request.template,
        template_version=version,
        dry_run=False,
        files=files,
        commit=commit,
        catalog_commit=catalog_commit,
        created=created,
        handoffs=handoffs,
    )
    _report(result)
    create_table_artifact(
        key="service-catalog",
        table=catalog_rows(Catalog(server).entries()),
        description=f"The service catalog after onboarding {request.name}",
    )
    logger.info("%s onboarded at %s (%s)", request.name, commit[:12], repository)
    return result


def _rendered_version(source: Path) -> str:
    import yaml

    answers = yaml.safe_load((source / ".copier-answers.yml").read_text())
    return str(answers.get("template_version", ""))


def _hand_off(request: ServiceRequest, commit: str, *, pushed: bool) -> tuple[HandOff, ...]:
    """Start the environment and docs flows, where those deployments exist.

    When this run pushed the first commit, that push starts build-test-deploy
    and publish-docs through the webhook bridge: publishing here as well would
    build the same commit's docs twice. Only a re-run, which pushes nothing,
    hands off publish-docs itself.
    """
    handoffs = [
        hand_off(
            "provision-environment/provision-environment",
            {"service": request.name, "environment": environment},
        )
        for environment in request.environments
    ]
    if not pushed:
        handoffs.append(
            hand_off("publish-docs/publish-docs", {"service": request.name, "commit": commit})
        )
    return tuple(handoffs)


def _report(result: OnboardingResult) -> None:
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
    create_markdown_artifact(
        key=f"onboarding-{result.name}",
        markdown="\n".join(lines),
        description=f"Onboarding of {result.name}",
    )
