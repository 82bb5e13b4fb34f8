"""A working tree of one commit: cloned fresh, or a kept clone brought to it by a fetch.

`tasks.git.checkout` clones a fresh tree for each run, which suits a build
that must start from nothing. A flow that runs again and again over one
repository on the same host (publishing a service's docs) keeps its clone
instead (`refresh_clone`): a fetch brings only the new objects, and a
checkout rewrites only the files that changed, where a clone wrote every
file and removed them all afterwards. A kept clone that git cannot bring to
the commit (removed, damaged, a run killed half-way) is cloned again.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import git

from slipway.errors import GitError

__all__ = ["clone_at", "refresh_clone"]

logger = logging.getLogger(__name__)

_SOURCES_UMASK = 0o022
"""The umask of a checkout's work tree: git's usual modes, as on a developer's machine."""
_KEPT_UMASK = 0o077
"""The umask of a kept clone: it lives in the platform's home, whose files are its owner's alone."""
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
"""What a clone has: every branch as origin's, every tag; a force-push or a moved tag wins."""


def clone_at(name: str, url: str, path: Path, wanted: str, *, umask: int = _SOURCES_UMASK) -> str:
    """Clone repository ``name`` from ``url`` into ``path`` and check out ``wanted`` (a branch or sha); returns the sha.

    Raises:
        GitError: the repository cannot be cloned, or has no such branch or commit.
    """
    try:
        clone = ["git", "clone", "--quiet", "--no-checkout", "--", url, str(path)]
        git.Git().execute(clone, umask=umask)
        repo = git.Repo(path)
        try:
            return _check_out(repo, wanted, umask)
        finally:
            repo.close()
    except git.GitCommandError as e:
        raise GitError(
            f"could not check out {wanted!r} of {name}: {e.stderr.strip() or e}",
            hint=f"check the commit exists: `git ls-remote {url}`",
        ) from e


def refresh_clone(name: str, url: str, path: Path, wanted: str) -> str:
    """Bring the clone of ``name`` (from ``url``) kept in ``path`` to ``wanted``, cloning it first if need be.

    The caller holds ``path`` for itself. Files the commit does not track,
    ignored ones included, are removed: the tree is exactly the commit's.

    Raises:
        GitError: the repository cannot be cloned, or has no such branch or commit.
    """
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        repo = None
    if repo is not None:
        try:
            if repo.remotes.origin.url == url:
                fetch = ["git", "fetch", "--quiet", "--force", "--prune", "origin", *_REFSPECS]
                repo.git.execute(fetch, umask=_KEPT_UMASK)
                target = _check_out(repo, wanted, _KEPT_UMASK)
                repo.git.clean("-ffdxq")
                return target
        except (git.GitCommandError, GitError, ValueError, AttributeError) as e:
            logger.info("cloning %s again into %s: %s", name, path, e)
        finally:
            repo.close()
    shutil.rmtree(path, ignore_errors=True)
    return clone_at(name, url, path, wanted, umask=_KEPT_UMASK)


def _check_out(repo: git.Repo, wanted: str, umask: int) -> str:
    """Check out ``wanted`` detached; returns its full sha.

    A full sha, what every build asks for, is checked out as it is: git
    refuses one that is not a commit, and looking it up first would put two
    more git processes on the path of every push.
    """
    full = _FULL_SHA.fullmatch(wanted) is not None
    target = wanted if full else _resolve(repo, wanted)
    try:
        # A fresh tree gets git's own modes (0644, 0755), not the platform's umask
        # 077: an image built from it copies them, and its non-root user must read
        # them. Sources are not secret, and the directory holding it stays 0700.
        repo.git.execute(["git", "checkout", "--detach", "--force", target], umask=umask)
    except git.GitCommandError as e:
        if full and _resolve_or_none(repo, wanted) is None:
            raise _no_such(wanted) from e
        raise
    return target


def _resolve(repo: git.Repo, wanted: str) -> str:
    """The full sha of a branch of the remote, or of a (possibly short) sha."""
    if (found := _resolve_or_none(repo, wanted)) is None:
        raise _no_such(wanted)
    return found


def _resolve_or_none(repo: git.Repo, wanted: str) -> str | None:
    for candidate in (f"origin/{wanted}", wanted):
        try:
            return str(repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}"))
        except git.GitCommandError:
            continue
    return None


def _no_such(wanted: str) -> GitError:
    return GitError(
        f"{wanted!r} is neither a branch nor a commit of the repository",
        hint="push it first, or pass an existing sha",
    )
