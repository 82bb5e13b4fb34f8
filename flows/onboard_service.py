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

from prefect import flow
from prefect.transactions import transaction

from blocks.deploy_target import DeployTarget
from blocks.git_server import GitServer
from tasks.catalog.model import ensure_owner_group
from tasks.handoff import HandOff, hand_off
from tasks.onboarding import (
    OnboardingResult,
    ServiceRequest,
    check_onboarding_request,
    create_service_repository,
    push_first_commit,
    register,
    render_template,
    report_onboarding,
)
from tasks.templates import release_template

__all__ = ["OnboardingResult", "ServiceRequest", "onboard_service"]


@flow(name="onboard-service", log_prints=False)
def onboard_service(request: ServiceRequest, dry_run: bool = False) -> OnboardingResult:
    """Create a service from a template: repository, catalog entry, environments, first deploy, docs.

    With ``dry_run`` it checks the request and renders the template, and
    creates nothing.
    """
    server = GitServer.load_default()
    port = check_onboarding_request(request, server, DeployTarget.load_default())
    release = None if dry_run else release_template(server, request.template)
    with tempfile.TemporaryDirectory(prefix=f"slipway-onboard-{request.name}-") as scratch:
        source = Path(scratch) / request.name
        planned = render_template(request, server, port, source, release)
        if dry_run:
            return report_onboarding(planned, server)
        with transaction():
            repository = create_service_repository(server, request.name)
            ensure_owner_group(server, request.owner, request.name)  # a note when it was missing
            catalog_commit = register(server, planned.catalog_entry(request))
            commit, created = push_first_commit(server, request.name, source)
    onboarded = planned.model_copy(
        update={
            "repository": repository,
            "dry_run": False,
            "commit": commit,
            "catalog_commit": catalog_commit,
            "created": created,
            "handoffs": _hand_off(request, commit, pushed=created),
        }
    )
    return report_onboarding(onboarded, server)


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
