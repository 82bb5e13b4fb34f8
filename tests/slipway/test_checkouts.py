"""The pull step that shares one read-only checkout per platform commit, with real git."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from slipway.checkouts import ensure_checkout, reuse_checkout
from slipway.errors import ConfigurationError, GitError


def _git(*args: str, cwd: Path) -> str:
    argv = ["git", "-c", "user.email=ci@slipway.test", "-c", "user.name=ci", *args]
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, marker: str) -> str:
    (repo / "pkgx").mkdir(exist_ok=True)
    (repo / "pkgx" / "__init__.py").write_text(f"MARKER = {marker!r}\n")
    (repo / "notes.txt").write_text(marker)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", marker, cwd=repo)
    return _git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def platform(tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository with three commits, each with its own ``pkgx.MARKER``."""
    repo = tmp_path / "platform"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    return repo, [_commit(repo, f"v{i}") for i in range(3)]


def _in_child(root: str, repository: str, sha: str, keep: int = 3) -> tuple[str, str]:
    """In a fresh process, as a flow run does: the directory and the marker its import sees."""
    code = (
        "import sys, json\n"
        "from slipway.checkouts import reuse_checkout\n"
        f"out = reuse_checkout({repository!r}, {sha!r}, directory={root!r}, keep={keep})\n"
        "import pkgx\n"
        "print(json.dumps([out['directory'], pkgx.MARKER]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    import json

    directory, marker = json.loads(done.stdout)
    return directory, marker


def test_a_commit_is_checked_out_once_read_only_compiled_and_without_git(platform, tmp_path):
    repo, shas = platform
    root = tmp_path / "checkouts"
    first = ensure_checkout(root, str(repo), shas[1])
    assert first == root / shas[1]
    assert (first / "notes.txt").read_text() == "v1"  # the older commit, not the branch tip
    assert not (first / ".git").exists()
    assert list((first / "pkgx" / "__pycache__").glob("__init__.*.pyc"))
    assert not os.stat(first / "notes.txt").st_mode & 0o222
    assert not os.stat(first / "pkgx").st_mode & 0o222
    inode = os.stat(first / "notes.txt").st_ino
    assert ensure_checkout(root, str(repo), shas[1]) == first  # reused as it is
    assert os.stat(first / "notes.txt").st_ino == inode
    assert not list(root.glob(".tmp-*"))


def test_each_run_imports_the_platform_of_its_own_commit(platform, tmp_path):
    repo, shas = platform
    root = str(tmp_path / "checkouts")
    # This process imported slipway from the installed platform first, as a
    # worker's flow-run process does; the step makes the checkout win anyway.
    (repo / "slipway").mkdir()
    (repo / "slipway" / "__init__.py").write_text("FROM_CHECKOUT = True\n")
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "own kernel", cwd=repo)
    head = _git("rev-parse", "HEAD", cwd=repo)
    code = (
        "import json\nimport slipway\n"
        "from slipway.checkouts import reuse_checkout\n"
        f"reuse_checkout({str(repo)!r}, {head!r}, directory={root!r})\n"
        "import slipway, pkgx\n"
        "print(json.dumps([getattr(slipway, 'FROM_CHECKOUT', False), pkgx.MARKER]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == '[true, "v2"]'
    for sha, marker in zip(shas, ("v0", "v1", "v2"), strict=True):
        directory, seen = _in_child(root, str(repo), sha)
        assert (directory, seen) == (f"{root}/{sha}", marker)


def test_runs_of_one_new_commit_at_once_share_one_checkout(platform, tmp_path):
    repo, shas = platform
    root = str(tmp_path / "checkouts")
    with ProcessPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(_in_child, [root] * 6, [str(repo)] * 6, [shas[0]] * 6))
    assert set(results) == {(f"{root}/{shas[0]}", "v0")}
    assert sorted(p.name for p in Path(root).iterdir()) == sorted(
        [shas[0], f"{shas[0]}.lock", ".create.lock"]
    )


def test_a_commit_the_repository_lacks_fails_and_leaves_nothing(platform, tmp_path):
    repo, _shas = platform
    root = tmp_path / "checkouts"
    missing = "0" * 39 + "1"
    with pytest.raises(GitError) as failed:
        ensure_checkout(root, str(repo), missing)
    assert missing[:12] in failed.value.message and "slipway_commit" in str(failed.value.hint)
    assert not (root / missing).exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_only_a_full_commit_id_is_accepted(platform, tmp_path):
    repo, shas = platform
    for wrong in (shas[0][:12], "main", "--upload-pack=touch /tmp/x"):
        with pytest.raises(ConfigurationError, match="not a full commit id"):
            reuse_checkout(str(repo), wrong, directory=str(tmp_path / "checkouts"))
    assert not (tmp_path / "checkouts").exists()


def test_old_checkouts_are_pruned_unless_a_run_still_holds_them(platform, tmp_path):
    repo, shas = platform
    root = tmp_path / "checkouts"
    more = [*shas, _commit(repo, "v3"), _commit(repo, "v4")]
    # A run of the oldest commit still runs (another process holds its lock).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from slipway.checkouts import ensure_checkout; "
            f"ensure_checkout(__import__('pathlib').Path({str(root)!r}), {str(repo)!r}, "
            f"{more[0]!r}); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for sha in more[1:]:  # each run is a process of its own, holding its checkout
            _in_child(str(root), str(repo), sha, keep=2)
        kept = {p.name for p in root.iterdir() if p.is_dir()}
        assert kept == {more[0], more[3], more[4]}  # in use, and the two newest
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    crashed = root / f".tmp-{more[1][:12]}-dead"  # what a host that died mid-fetch left
    (crashed / "pkgx").mkdir(parents=True)
    (crashed / "pkgx" / "__init__.py").write_text("half")
    os.chmod(crashed / "pkgx", 0o555)
    _in_child(str(root), str(repo), more[1], keep=2)
    assert {p.name for p in root.iterdir() if p.is_dir()} == {more[1], more[4]}
    assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
