"""One read-only checkout of the platform per commit, shared by a worker host's flow runs.

prefect.yaml's ``pull`` step names `reuse_checkout`: a worker's flow run
calls it before it imports its flow. Prefect's own ``git_clone`` made a fresh
clone for every run, and Python then compiled every module of it again; here
the first run of a commit fetches it once, compiles it and renames it into
place, and every later run of that commit on the host only takes a lock.

What each run may rely on:

- **Exactly its commit.** A checkout lives at ``<root>/<full sha>``, made in a
  temporary directory, checked against the sha and renamed into place, so it
  is complete or absent; and the run's interpreter forgets the platform's
  modules it imported before the step (the worker's own copies), so every
  platform module it imports afterwards comes from the checkout.
- **Nothing changes under it.** Checkouts are read-only: compiled before the
  rename (no run writes ``__pycache__``), without ``.git`` (no git command
  rewrites an index), without write bits. A run holds a shared
  lock on ``<root>/<sha>.lock`` until its process ends, and pruning removes
  only checkouts that no run holds.
- **Bounded disk.** After creating a checkout, the least recently used ones
  beyond `KEEP` go, together with what a crash left half-made.
"""

from __future__ import annotations

import compileall
import contextlib
import fcntl
import importlib
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

from slipway.errors import CommandError, ConfigurationError, GitError
from slipway.home import SlipwayHome

__all__ = ["KEEP", "CheckoutOutput", "ensure_checkout", "reuse_checkout"]

logger = logging.getLogger(__name__)

KEEP = 3
"""Checkouts kept per host: the pinned commit and the two before it, for runs still going."""

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_GIT_TIMEOUT = 600.0


class CheckoutOutput(TypedDict):
    """What the pull step hands to Prefect: the directory the run starts in."""

    directory: str


def reuse_checkout(
    repository: str, commit_sha: str, directory: str | None = None, keep: int = KEEP
) -> CheckoutOutput:
    """Prefect pull step: run this flow run from the host's checkout of ``commit_sha``.

    Args:
        repository: The git URL or path the platform is fetched from.
        commit_sha: The full 40-hex commit the deployment pins.
        directory: Where checkouts live; ``<SLIPWAY_HOME>/checkouts`` by default.
        keep: How many checkouts to keep on this host.

    Raises:
        ConfigurationError: ``commit_sha`` is not a full commit id.
        GitError: the commit could not be fetched; nothing is left behind.
    """
    root = Path(directory) if directory else SlipwayHome.from_env().checkouts
    checkout = ensure_checkout(root, repository, commit_sha, keep=keep)
    _import_platform_from(checkout)
    return CheckoutOutput(directory=str(checkout))


def ensure_checkout(root: Path, repository: str, commit_sha: str, *, keep: int = KEEP) -> Path:
    """The read-only checkout of ``commit_sha``, made if missing; held by this process until it ends.

    Safe under concurrent calls from any number of processes: one fetches,
    the others wait for it and reuse its checkout.
    """
    sha = commit_sha.strip().lower()
    if not _FULL_SHA.fullmatch(sha):
        raise ConfigurationError(
            f"the platform commit {commit_sha[:50]!r} is not a full commit id",
            hint="pin the 40-hex sha in the Prefect Variable slipway_commit "
            "(`slipway up --role server` does)",
        )
    if keep < 1:
        raise ConfigurationError(f"keep={keep} would remove the checkout in use", hint="keep >= 1")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _hold_shared(root / f"{sha}.lock")
    target = root / sha
    if not target.is_dir():
        with _exclusive(root / ".create.lock"):
            if not target.is_dir():
                _create(root, repository, sha, target)
                _prune(root, keep=keep, current=sha)
    os.utime(root / f"{sha}.lock")  # most recently used: pruned last
    return target


def _hold_shared(path: Path) -> int:
    """A shared lock on ``path``, kept until this process exits (the fd is never closed)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if path.stat().st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # pruned between open and lock: take the new file's lock


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _create(root: Path, repository: str, sha: str, target: Path) -> None:
    """Fetch ``sha`` into a temporary directory, check, compile and freeze it, rename it in."""
    from slipway.process import run

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=root))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        git = ["git", "-C", str(tmp)]
        run([*git, "init", "-q"], env=env, timeout=_GIT_TIMEOUT)
        fetch = [*git, "fetch", "-q", "--depth", "1", "--end-of-options", repository, sha]
        run(fetch, env=env, timeout=_GIT_TIMEOUT)
        run([*git, "checkout", "-q", "--detach", "FETCH_HEAD"], env=env, timeout=_GIT_TIMEOUT)
        head = run([*git, "rev-parse", "HEAD"], env=env, timeout=_GIT_TIMEOUT).stdout.strip()
        if head != sha:
            raise GitError(
                f"fetching {sha[:12]} from {repository} checked out {head[:12]}",
                hint="check that slipway_repository is the repository slipway_commit is from",
            )
        _remove_tree(tmp / ".git")
        for package in _packages(tmp):  # what runs import; templates stay as they are
            compileall.compile_dir(tmp / package, quiet=2, ddir=target / package, workers=1)
        _freeze(tmp)
        tmp.rename(target)
    except CommandError as e:
        _remove_tree(tmp)
        raise GitError(
            f"cannot fetch platform commit {sha[:12]} from {repository}: {e.message}",
            hint="check the Prefect Variables slipway_repository and slipway_commit, and that "
            "this host can reach the repository",
        ) from e
    except BaseException:
        _remove_tree(tmp)
        raise
    logger.info("checked out platform commit %s into %s", sha[:12], target)


def _freeze(tree: Path) -> None:
    """No write bits left: a run that writes into the checkout fails instead of changing it."""
    for path in [*tree.rglob("*"), tree]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o222)


def _remove_tree(tree: Path) -> None:
    """Remove ``tree`` even where `_freeze` made it read-only."""
    if not tree.exists():
        return
    for path in [tree, *tree.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(tree, ignore_errors=True)


def _prune(root: Path, *, keep: int, current: str) -> None:
    """Remove what a crash left half-made, and unused checkouts beyond the ``keep`` newest.

    Runs under the creation lock, so every temporary directory it sees is stale.
    """
    for stale in root.glob(".tmp-*"):
        _remove_tree(stale)
    for stale in root.glob(".trash-*"):
        _remove_tree(stale)
    shas = [p.name for p in root.iterdir() if _FULL_SHA.fullmatch(p.name) and p.is_dir()]

    def last_used(sha: str) -> float:
        with contextlib.suppress(FileNotFoundError):
            return (root / f"{sha}.lock").stat().st_mtime
        return 0.0

    older = sorted((s for s in shas if s != current), key=last_used, reverse=True)
    for sha in older[keep - 1 :]:
        _remove_unused(root, sha)


def _remove_unused(root: Path, sha: str) -> None:
    lock = root / f"{sha}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a run still uses it; a later prune takes it
        trash = Path(tempfile.mkdtemp(prefix=f".trash-{sha[:12]}-", dir=root))
        (root / sha).rename(trash / sha)
        lock.unlink()
        _remove_tree(trash)
        logger.info("removed the unused platform checkout %s", sha[:12])
    finally:
        os.close(fd)


def _import_platform_from(checkout: Path) -> None:
    """Make the checkout the only source of the platform's packages in this process.

    The flow-run process imported some of them (this step, Prefect patches)
    from the worker's own installation before the step ran; forgetting them
    makes every later import find the checkout's, first on `sys.path`.
    """
    packages = _packages(checkout)
    for name in [m for m in sys.modules if m.partition(".")[0] in packages]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    importlib.invalidate_caches()


def _packages(tree: Path) -> set[str]:
    """The platform's top-level Python packages in ``tree``: ``slipway``, ``tasks``, ..."""
    return {p.parent.name for p in tree.glob("*/__init__.py")}
