"""The git server: local bare repositories, or a hosted organisation."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import git

from slipway.errors import ConfigurationError, GitError, InvalidRequest
from slipway.health import ComponentHealth
from slipway.names import GitSha, ServiceName, check_dns_label, check_git_ref
from tasks.git_clone import clone_at, refresh_clone
from tasks.push_hook import (
    PushHook,
    hook_script,
    install_push_hook,
    keep_private,
    platform_push_hook,
)

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = [
    "Author",
    "Checkout",
    "LocalCommits",
    "PushHook",
    "check_git_server",
    "checkout",
    "commit_people",
    "create_repository",
    "delete_repository",
    "head_commit",
    "hook_script",
    "install_push_hook",
    "platform_push_hook",
    "publish_directory",
    "repository_exists",
    "repository_url",
    "tag_commit",
]


def _repository_name(name: str) -> str:
    """A repository's name: a service's, checked where it entered, or any other checked now."""
    return name if isinstance(name, ServiceName) else check_dns_label(name, what="repository name")


@dataclass(frozen=True)
class Author:
    """Who a commit that Slipway makes is attributed to."""

    name: str = "Slipway"
    email: str = "slipway@localhost"


@dataclass(frozen=True)
class Checkout:
    """A clean working tree of one commit of a service's repository."""

    path: Path
    """The working tree; removed when the ``checkout`` context ends, unless it is kept."""
    sha: GitSha
    """The full commit id that is checked out."""
    ref: str
    """What was asked for: a sha, a branch or the default branch's name."""

    def committed_at(self) -> datetime:
        """When the checked-out commit was made, in UTC."""
        return git.Repo(self.path).commit(self.sha).committed_datetime.astimezone(UTC)


def check_git_server(server: GitServer) -> ComponentHealth:
    """Whether repositories can be created: the root exists and is writable."""
    if server.provider != "local":
        where = server.api_url or server.provider
        return ComponentHealth(
            "git", where, True, f"{server.provider} organisation {server.organization}"
        )
    root = _local_root(server)
    if not root.is_dir():
        return ComponentHealth(
            "git", str(root), False, f"{root} does not exist; `slipway up` creates it"
        )
    if not os.access(root, os.W_OK):
        return ComponentHealth("git", str(root), False, f"{root} is not writable by this user")
    count = sum(1 for p in root.glob("*.git") if p.is_dir())
    return ComponentHealth("git", str(root), True, f"{count} repositories")


def create_repository(server: GitServer, name: str, *, hook: PushHook | None = None) -> Path:
    """Create the bare repository ``<root>/<name>.git``, or return the existing one.

    Idempotent: an existing repository is kept as it is, with its hook
    refreshed. A half-made repository is removed again when creation fails.

    Raises:
        ConfigurationError: a hook is asked for, but this interpreter cannot
            run one (`hook_script`); refused before the repository is made.
        GitError: git could not create the repository.
    """
    _repository_name(name)
    if hook is not None:
        hook_script()  # else a new repository would be left without its hook
    path = _local_root(server) / f"{name}.git"
    if not path.exists():
        try:
            # --shared=0600: the files git init makes are private whatever the umask.
            git.Repo.init(path, bare=True, initial_branch=server.default_branch, shared="0600")
        except (git.GitError, OSError) as e:
            shutil.rmtree(path, ignore_errors=True)
            raise GitError(f"could not create repository {path}: {e}") from e
    keep_private(path)
    if hook is not None:
        install_push_hook(path, hook)
    return path


def repository_url(server: GitServer, name: str) -> str:
    """The URL that ``git clone`` takes for the repository ``name``."""
    _repository_name(name)
    return str(_local_root(server) / f"{name}.git")


def repository_exists(server: GitServer, name: str) -> bool:
    """Whether the repository ``name`` exists on the server."""
    _repository_name(name)
    return (_local_root(server) / f"{name}.git" / "HEAD").is_file()


def delete_repository(server: GitServer, name: str) -> bool:
    """Remove the repository ``name``; returns whether there was one.

    Used to undo a failed onboarding, so it never raises for a missing one.
    """
    _repository_name(name)
    path = _local_root(server) / f"{name}.git"
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def head_commit(server: GitServer, name: str, branch: str | None = None) -> str | None:
    """The sha at the tip of ``branch`` (default: the server's), or None when it has none."""
    path = _local_root(server) / f"{name}.git"
    if not (path / "HEAD").is_file():
        raise GitError(
            f"no repository {name!r} on the git server",
            hint="onboard the service first: `slipway onboard NAME`",
        )
    ref = branch or server.default_branch
    try:
        return str(git.Repo(path).commit(f"refs/heads/{ref}").hexsha)
    except (git.BadName, ValueError):
        return None


def commit_people(server: GitServer, name: str, sha: str) -> frozenset[str]:
    """Who a commit says wrote and committed it: their names and the user part of their emails.

    Used to keep the authors of a change from approving it; empty when the
    commit is not in the repository.
    """
    try:
        commit = git.Repo(repository_url(server, name)).commit(sha)
    except (git.GitError, git.BadName, ValueError):
        return frozenset()
    people = {commit.author, commit.committer}
    names = {str(p.name or "") for p in people} | {str(p.email or "").split("@")[0] for p in people}
    return frozenset(n for n in names if n)


class LocalCommits:
    """Whether a local repository holds a commit, read in-process: for the webhook bridge.

    The bridge checks every push, hundreds a second in a burst. git's object
    database read by gitdb answers in microseconds, where a ``git cat-file``
    costs a process each. A miss looks at the pack files again before it says
    no, so a push that arrived as a new pack is found.
    """

    def __init__(self, server: GitServer) -> None:
        self._root = _local_root(server)
        self._databases: dict[str, Any] = {}

    def __call__(self, repository: str, sha: str) -> bool:
        """Whether ``<root>/<repository>.git`` holds ``sha``; False when there is no such repository."""
        from gitdb import GitDB  # type: ignore[import-untyped]

        objects = self._root / f"{repository}.git" / "objects"
        try:
            wanted = bytes.fromhex(sha)
        except ValueError:
            return False
        database = self._databases.get(repository)
        if database is None:
            if not objects.is_dir():
                return False
            database = self._databases[repository] = GitDB(str(objects))
        if database.has_object(wanted):
            return True
        database.update_cache(force=True)
        return bool(database.has_object(wanted))


@contextmanager
def checkout(
    server: GitServer, name: str, commit: str | None = None, *, kept: Path | None = None
) -> Iterator[Checkout]:
    """Clone ``name`` into a fresh directory at ``commit`` (a sha or branch), removed afterwards.

    Without ``commit`` the tip of the default branch is checked out. With
    ``kept``, a directory the caller holds for itself, the clone there is
    brought to the commit by a fetch and kept for the next run instead
    (`tasks.git_clone.refresh_clone`).
    """
    wanted = commit or server.default_branch
    if wanted.startswith("-") or any(c.isspace() for c in wanted):
        raise InvalidRequest(
            f"{wanted!r} is not a commit or branch", hint="pass a sha or a branch name"
        )
    url = repository_url(server, name)
    if kept is not None:
        yield Checkout(
            path=kept, sha=GitSha.parse(refresh_clone(name, url, kept, wanted)), ref=wanted
        )
        return
    workspace = Path(tempfile.mkdtemp(prefix=f"slipway-{name}-"))
    try:
        target = clone_at(name, url, workspace / name, wanted)
        yield Checkout(path=workspace / name, sha=GitSha.parse(target), ref=wanted)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def publish_directory(
    server: GitServer,
    name: str,
    source: Path,
    *,
    message: str,
    author: Author | None = None,
) -> str:
    """Commit the whole of ``source`` on top of the default branch of ``name`` and push it.

    The repository must exist; its hook fires as for any push. Returns the new
    sha, or the current one when ``source`` changes nothing.
    """
    who = author or Author()
    actor = git.Actor(who.name, who.email)
    url = repository_url(server, name)
    branch = server.default_branch
    with tempfile.TemporaryDirectory(prefix=f"slipway-{name}-") as scratch:
        try:
            repo = git.Repo.clone_from(url, Path(scratch) / name)
            if repo.head.is_valid():
                repo.git.checkout(branch)
            else:
                repo.git.checkout("--orphan", branch)
            for entry in Path(repo.working_tree_dir or scratch).iterdir():
                if entry.name != ".git":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            shutil.copytree(
                source,
                repo.working_tree_dir or scratch,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"),
            )
            repo.git.add("--all")
            if repo.head.is_valid() and not repo.is_dirty(untracked_files=True):
                return str(repo.head.commit.hexsha)
            commit = repo.index.commit(message, author=actor, committer=actor)
            repo.remote("origin").push(f"refs/heads/{branch}:refs/heads/{branch}").raise_if_error()
        except git.GitCommandError as e:
            raise GitError(f"could not push to {name}: {e.stderr.strip() or e}") from e
        return str(commit.hexsha)


def tag_commit(server: GitServer, name: str, tag: str, sha: str) -> str:
    """Point the new tag ``tag`` of ``name`` at ``sha``; returns the sha the tag names.

    An existing tag is never moved: a release, once tagged, stays what it was.
    The caller compares the returned sha with its own to notice that.
    """
    check_git_ref(tag, what="tag")
    repo = git.Repo(repository_url(server, name))
    existing = next((t for t in repo.tags if t.name == tag), None)
    if existing is not None:
        return str(existing.commit.hexsha)
    try:
        repo.create_tag(tag, ref=sha)
    except git.GitCommandError as e:
        raise GitError(f"could not tag {sha[:12]} of {name} as {tag}: {e.stderr.strip()}") from e
    return sha


def _local_root(server: GitServer) -> Path:
    if server.provider != "local" or server.root is None:
        raise ConfigurationError(
            f"the git server is {server.provider}, not local",
            hint="local repositories need the slipway-git-server block's provider set to 'local'",
        )
    return server.root
