"""Roll a template's new version out to the services made from it, with `copier update`.

Backstage's scaffolder forgets a service once it is created; here the answers
file that onboarding kept lets the platform team raise a template's version
and bring every service along. Each service gets one commit on its default
branch (which starts its build-test-deploy like any push) or, where the
service's own changes clash with the template's, nothing at all and a failed
entry naming the conflicting files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import git
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict

from blocks.git_server import GitServer
from slipway.errors import GitError, InvalidRequest, SlipwayError, TemplateError
from slipway.names import check_git_ref
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import Author, repository_url
from tasks.templates import ANSWERS_FILE, available_templates, publish_template, update_service

__all__ = ["TemplateUpdate", "update_service_template"]


class TemplateUpdate(BaseModel):
    """What happened to one service."""

    model_config = ConfigDict(frozen=True)

    service: str
    outcome: str
    """``updated``, ``up-to-date`` or ``failed``."""
    from_version: str
    to_version: str
    commit: str | None = None
    detail: str = ""


@task(name="update-one-service", retries=1, retry_delay_seconds=2)
def update_one(server: GitServer, service: str, tag: str, branch: str) -> TemplateUpdate:
    """Clone, `copier update`, and push one commit; nothing is pushed on a conflict."""
    logger = get_run_logger()
    author = Author()
    with tempfile.TemporaryDirectory(prefix=f"slipway-update-{service}-") as scratch:
        work = Path(scratch) / service
        try:
            repo = git.Repo.clone_from(repository_url(server, service), work)
            repo.git.checkout("-B", branch, f"origin/{server.default_branch}")
        except git.GitCommandError as e:
            raise GitError(f"could not clone {service}: {e.stderr.strip()}") from e
        before = _recorded_version(work)
        rendered = update_service(work, vcs_ref=tag)
        after = _recorded_version(work)
        conflicts = sorted(str(f) for f in rendered.files if f.suffix == ".rej")
        if conflicts:
            return TemplateUpdate(
                service=service,
                outcome="failed",
                from_version=before,
                to_version=after,
                detail="conflicts with the service's changes: " + ", ".join(conflicts),
            )
        repo.git.add("--all")
        if not repo.is_dirty(untracked_files=True):
            return TemplateUpdate(
                service=service, outcome="up-to-date", from_version=before, to_version=after
            )
        actor = git.Actor(author.name, author.email)
        commit = repo.index.commit(
            f"Update template to {after} (was {before})", author=actor, committer=actor
        )
        try:
            repo.remote("origin").push(f"{branch}:refs/heads/{branch}").raise_if_error()
        except git.GitCommandError as e:
            raise GitError(f"could not push the update of {service}: {e.stderr.strip()}") from e
        logger.info("%s: template %s -> %s at %s", service, before, after, commit.hexsha[:12])
        return TemplateUpdate(
            service=service,
            outcome="updated",
            from_version=before,
            to_version=after,
            commit=str(commit.hexsha),
        )


@flow(name="update-service-template")
def update_service_template(
    template: str = "python-service",
    services: list[str] | None = None,
    branch: str | None = None,
) -> list[TemplateUpdate]:
    """Bring services made from ``template`` to its current version.

    Args:
        template: The template whose services to update.
        services: Only these services; all of the template's services when empty.
        branch: Push to this branch instead of each service's default branch,
            e.g. to review the change before it deploys.
    """
    logger = get_run_logger()
    if template not in available_templates():
        raise InvalidRequest(
            f"unknown template {template!r}", hint=f"use one of: {', '.join(available_templates())}"
        )
    server = GitServer.load_default()
    target_branch = check_git_ref(branch, what="branch") if branch else server.default_branch
    catalog = Catalog(server)
    chosen = [e for e in catalog.entries() if e.template == template]
    if services:
        unknown = sorted(set(services) - {e.name for e in chosen})
        if unknown:
            raise InvalidRequest(
                f"not services of template {template!r}: {', '.join(unknown)}",
                hint="`slipway catalog list` shows each service's template",
            )
        chosen = [e for e in chosen if e.name in services]
    release = publish_template(server, template)
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
            _record_version(catalog, entry.name, template, release.version)
    create_table_artifact(
        key=f"template-update-{template}",
        table=[r.model_dump(mode="json") for r in results],
        description=f"Services updated to {template} {release.version}",
    )
    failed = [r for r in results if r.outcome == "failed"]
    logger.info(
        "%s %s: %d updated, %d up to date, %d failed",
        template,
        release.version,
        sum(r.outcome == "updated" for r in results),
        sum(r.outcome == "up-to-date" for r in results),
        len(failed),
    )
    if failed:
        raise SlipwayError(
            f"{len(failed)} service(s) could not be updated: "
            + "; ".join(f"{r.service}: {r.detail}" for r in failed),
            hint="resolve the conflicts in those services by hand, then run again",
        )
    return results


def _record_version(catalog: Catalog, service: str, template: str, version: str) -> None:
    def bump(entry: CatalogEntry) -> CatalogEntry:
        return entry.model_copy(update={"template_version": version})

    catalog.update(service, bump, message=f"{service}: template {template} {version}")


def _recorded_version(service: Path) -> str:
    answers = yaml.safe_load((service / ANSWERS_FILE).read_text()) or {}
    return str(answers.get("template_version", ""))
