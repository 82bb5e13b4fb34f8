"""Roll a template's new version out to the services made from it, with `copier update`.

Backstage's scaffolder forgets a service once it is created; here the answers
file that onboarding kept lets the platform team raise a template's version
and bring every service along. Each service gets one commit on its default
branch (which starts its build-test-deploy like any push) or, where the
service's own changes clash with the template's, nothing at all and a failed
entry naming the conflicting files.
"""

from __future__ import annotations

from prefect import flow

from blocks.git_server import GitServer
from slipway.errors import SlipwayError, TemplateError
from slipway.names import GitRef
from tasks.template_updates import (
    TemplateUpdate,
    record_template_version,
    report_template_updates,
    services_of_template,
    update_one,
)
from tasks.templates import release_template

__all__ = ["TemplateUpdate", "update_service_template"]


@flow(name="update-service-template")
def update_service_template(
    template: str = "python-service",
    services: list[str] | None = None,
    branch: GitRef | None = None,
) -> list[TemplateUpdate]:
    """Bring services made from ``template`` to its current version.

    Args:
        template: The template whose services to update.
        services: Only these services; all of the template's services when empty.
        branch: Push to this branch instead of each service's default branch,
            e.g. to review the change before it deploys.
    """
    server = GitServer.load_default()
    chosen = services_of_template(server, template, services)
    target_branch = branch or server.default_branch
    release = release_template(server, template)
    results: list[TemplateUpdate] = []
    for entry in chosen:
        try:
            result = update_one(server, entry.name, release.tag, target_branch)
        except (SlipwayError, TemplateError) as e:
            result = TemplateUpdate(
                service=entry.name,
                outcome="failed",
                from_version=entry.template_version,
                to_version=release.version,
                detail=str(e),
            )
        results.append(result)
        if result.outcome == "updated" and target_branch == server.default_branch:
            record_template_version(server, entry.name, template, release.version)
    return report_template_updates(template, release.version, results)
