"""How fresh a service's published docs are, against the tip of its repository.

Docs are *fresh* when built from the latest commit, *behind* when built from
an older one less than ``stale_after`` older, *stale* past that, *missing*
when nothing is published, and *unknown* when the repository cannot be read.
The portal shows it and the scorecard's ``docs_freshness`` fact is it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import git

from tasks.git import repository_url
from tasks.techdocs import CONFIG_NAMES, DocsMetadata

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = [
    "DEFAULT_STALE_AFTER",
    "CommitInfo",
    "Freshness",
    "freshness",
    "latest_commit",
    "span",
]

DEFAULT_STALE_AFTER = timedelta(days=14)
"""How far docs may trail the latest commit before they count as stale."""

Freshness = Literal["fresh", "behind", "stale", "missing", "unknown"]


@dataclass(frozen=True)
class CommitInfo:
    """The tip of a service's default branch."""

    sha: str
    committed_at: datetime
    has_docs: bool
    """Whether that commit has a ``mkdocs.yml``."""


def latest_commit(server: GitServer, name: str) -> CommitInfo | None:
    """The tip of the service's default branch; None when there is no repository or commit."""
    branch = f"refs/heads/{server.default_branch}"
    try:
        repo = git.Repo(repository_url(server, name))
    except git.GitError:  # missing or not a repository
        return None
    try:
        commit = repo.commit(branch)
        names = {blob.name for blob in commit.tree.blobs}
        return CommitInfo(
            sha=str(commit.hexsha),
            committed_at=commit.committed_datetime.astimezone(UTC),
            has_docs=any(n in names for n in CONFIG_NAMES),
        )
    except (git.GitError, git.BadName, ValueError):
        return None  # no commit on the default branch yet, or a broken repository
    finally:
        repo.close()


def freshness(
    docs: DocsMetadata | None, latest: CommitInfo | None, *, stale_after: timedelta
) -> tuple[Freshness, str]:
    """Classify a service's docs against its latest commit: (state, why in a few words)."""
    if docs is None:
        if latest is None:
            return "missing", "the repository has no commits yet"
        if not latest.has_docs:
            return "missing", "no mkdocs.yml in the repository"
        return "missing", "never published: run the publish-docs deployment"
    if latest is None:
        return "unknown", "the repository or its default branch is missing"
    if docs.commit == latest.sha:
        return "fresh", "built from the latest commit"
    built_from = docs.built_at
    if docs.slipway is not None:
        built_from = datetime.fromtimestamp(docs.slipway.commit_timestamp / 1000, UTC)
    lag = latest.committed_at - built_from
    behind = f"{span(lag)} older than the latest commit {latest.sha[:7]}"
    return ("stale" if lag > stale_after else "behind"), behind


def span(delta: timedelta) -> str:
    """A duration as people say it: ``less than an hour``, ``5 hours``, ``3 days``."""
    if delta < timedelta(hours=1):
        return "less than an hour"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)} hours"
    return f"{delta.days} days"
