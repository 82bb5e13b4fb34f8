"""Rolling a template's new version out to one service: clone, ``copier update``, one commit.

Backstage's scaffolder forgets a service once it is created; here the answers
file that onboarding kept lets the platform team raise a template's version
and bring every service along. Nothing is pushed where the service's own
changes clash with the template's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import git
import yaml
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from blocks.git_server import GitServer
from slipway.errors import GitError, InvalidRequest, SlipwayError
from slipway.names import ServiceName
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import Author, repository_url
from tasks.templates import ANSWERS_FILE, available_templates, update_service

__all__ = [
    "TemplateUpdate",
    "record_template_version",
    "report_template_updates",
    "services_of_template",
    "update_one",
]


class TemplateUpdate(BaseModel):
    """What happened to one service."""

    model_config = ConfigDict(frozen=True)

    service: ServiceName
    outcome: str
    """``updated``, ``up-to-date`` or ``failed``."""
    from_version: str
    to_version: str
    commit: str | None = None
    detail: str = ""


@task(name="choose-services", cache_policy=NO_CACHE)
def services_of_template(
    server: GitServer, template: str, services: list[str] | None
) -> list[CatalogEntry]:
    """The catalog's services made from ``template``; only ``services`` among them when given.

    Raises:
        InvalidRequest: The template is unknown, or a named service is not one of its.
    """
    if template not in available_templates():
        raise InvalidRequest(
            f"unknown template {template!r}", hint=f"use one of: {', '.join(available_templates())}"
        )
    chosen = [e for e in Catalog(server).entries() if e.template == template]
    if services:
        unknown = sorted(set(services) - {e.name for e in chosen})
        if unknown:
            raise InvalidRequest(
                f"not services of template {template!r}: {', '.join(unknown)}",
                hint="`slipway catalog list` shows each service's template",
            )
        chosen = [e for e in chosen if e.name in services]
    return chosen


@task(name="update-one-service", retries=1, retry_delay_seconds=2)
def update_one(server: GitServer, service: ServiceName, tag: str, branch: str) -> TemplateUpdate:
    """Clone, `copier update`, and push one commit; nothing is pushed on a conflict."""
    with tempfile.TemporaryDirectory(prefix=f"slipway-update-{service}-") as scratch:
        work = Path(scratch) / service
        try:
            repo = git.Repo.clone_from(repository_url(server, service), work)
            repo.git.checkout("-B", branch, f"origin/{server.default_branch}")
        except git.GitCommandError as e:
            raise GitError(f"could not clone {service}: {e.stderr.strip()}") from e
        before = _recorded_version(work)
        rendered = update_service(work, vcs_ref=tag)
        update = TemplateUpdate(
            service=service,
            outcome="failed",
            from_version=before,
            to_version=_recorded_version(work),
        )
        conflicts = sorted(str(f) for f in rendered.files if f.suffix == ".rej")
        if conflicts:
            detail = "conflicts with the service's changes: " + ", ".join(conflicts)
            return update.model_copy(update={"detail": detail})
        repo.git.add("--all")
        if not repo.is_dirty(untracked_files=True):
            return update.model_copy(update={"outcome": "up-to-date"})
        commit = _push_update(repo, branch, update)
        return update.model_copy(update={"outcome": "updated", "commit": commit})


def _push_update(repo: git.Repo, branch: str, update: TemplateUpdate) -> str:
    """Commit the update and push it to ``branch``; returns the commit."""
    author = Author()
    actor = git.Actor(author.name, author.email)
    commit = repo.index.commit(
        f"Update template to {update.to_version} (was {update.from_version})",
        author=actor,
        committer=actor,
    )
    try:
        repo.remote("origin").push(f"{branch}:refs/heads/{branch}").raise_if_error()
    except git.GitCommandError as e:
        raise GitError(f"could not push the update of {update.service}: {e.stderr.strip()}") from e
    get_run_logger().info(
        "%s: template %s -> %s at %s",
        update.service,
        update.from_version,
        update.to_version,
        commit.hexsha[:12],
    )
    return str(commit.hexsha)


@task(name="record-template-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_template_version(
    server: GitServer, service: ServiceName, template: str, version: str
) -> None:
    """Keep the template version a service now has in its catalog entry."""

    def bump(entry: CatalogEntry) -> CatalogEntry:
        return entry.model_copy(update={"template_version": version})

    Catalog(server).update(service, bump, message=f"{service}: template {template} {version}")


@task(name="report-template-update", cache_policy=NO_CACHE)
def report_template_updates(
    template: str, version: str, results: list[TemplateUpdate]
) -> list[TemplateUpdate]:
    """The ``template-update-<template>`` table; fails naming every service that was not updated.

    Raises:
        SlipwayError: Some services could not be updated; the others were.
    """
    create_table_artifact(
        key=f"template-update-{template}",
        table=[r.model_dump(mode="json") for r in results],
        description=f"Services updated to {template} {version}",
    )
    failed = [r for r in results if r.outcome == "failed"]
    get_run_logger().info(
        "%s %s: %d updated, %d up to date, %d failed",
        template,
        version,
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


def _recorded_version(service: Path) -> str:
    answers = yaml.safe_load((service / ANSWERS_FILE).read_text()) or {}
    return str(answers.get("template_version", ""))
