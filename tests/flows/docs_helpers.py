"""Real service repositories with MkDocs sites, for the docs flow's and the portal's tests.

A service is rendered from the python-service template once per session,
then copied into each test's own git server, committed (optionally with a
given date) and entered in the catalog.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import git

from blocks import GitServer
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import create_repository, repository_url
from tasks.templates import ServiceAnswers, render_service

GUIDE = "# Guide\n\nHow to use the service.\n"


def render_template_service(destination: Path) -> Path:
    """The python-service template rendered, plus a second page so one can change alone."""
    answers = ServiceAnswers(
        service_name="template-svc", owner="group:docs", description="A template service."
    )
    render_service("python-service", destination, answers)
    (destination / "docs" / "guide.md").write_text(GUIDE)
    config = destination / "mkdocs.yml"
    config.write_text(
        config.read_text().replace("  - Home: index.md", "  - Home: index.md\n  - Guide: guide.md")
    )
    return destination


class ServiceRepo:
    """A service's repository on the test git server, and a working tree to change it from."""

    def __init__(self, server: GitServer, name: str, work: Path) -> None:
        self.server, self.name, self.work = server, name, work

    def commit(
        self, edit: Callable[[Path], None], message: str, *, when: datetime | None = None
    ) -> str:
        """Apply ``edit`` to the working tree, commit everything and push; returns the sha."""
        edit(self.work)
        repo = git.Repo(self.work)
        repo.git.add("--all")
        actor = git.Actor("Test", "test@localhost")
        stamp = f"{int(when.timestamp())} +0000" if when else None
        commit = repo.index.commit(
            message, author=actor, committer=actor, author_date=stamp, commit_date=stamp
        )
        repo.remote("origin").push(f"HEAD:refs/heads/{self.server.default_branch}").raise_if_error()
        return str(commit.hexsha)


def make_service(
    name: str,
    source: Path | None,
    work_root: Path,
    *,
    description: str = "",
    owner: str = "group:docs",
    when: datetime | None = None,
) -> ServiceRepo:
    """Create repository ``name`` holding a copy of ``source`` (or a README only) and catalog it."""
    server = GitServer.load_default()
    create_repository(server, name)
    work = work_root / name
    repo = git.Repo.clone_from(repository_url(server, name), work)
    repo.git.checkout("--orphan", server.default_branch)
    service = ServiceRepo(server, name, work)

    def fill(tree: Path) -> None:
        if source is not None:
            shutil.copytree(source, tree, dirs_exist_ok=True)
        else:
            (tree / "README.md").write_text(f"# {name}\n")

    service.commit(fill, "initial commit", when=when)
    entry = CatalogEntry(
        name=name,
        owner=owner,
        description=description,
        repository=repository_url(server, name),
        port=8080,
    )
    Catalog(server).save(entry, message=f"add {name}")
    return service


def store_files(root: Path) -> dict[str, int]:
    """Every file under a local store's directory, by key, with its inode (new on each put)."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_ino
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_site(root: Path, config: str, pages: dict[str, str] | None = None) -> Path:
    """A repository at ``root`` with ``mkdocs.yml`` and ``docs/`` pages (paths may have folders)."""
    (root / "docs").mkdir(parents=True)
    for name, text in (pages or {"index.md": "# Home\n"}).items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text)
    (root / "mkdocs.yml").write_text(config)
    return root
