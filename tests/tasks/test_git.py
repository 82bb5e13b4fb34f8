"""The local git server: checkouts, publishing a directory, tags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest
from pydantic import SecretStr

from blocks import GitServer
from slipway.errors import ConfigurationError, GitError, InvalidRequest
from slipway.private import private_umask
from tasks.git import (
    PushHook,
    checkout,
    create_repository,
    delete_repository,
    head_commit,
    hook_script,
    install_push_hook,
    publish_directory,
    repository_exists,
    tag_commit,
)


@pytest.fixture
def server(tmp_path: Path) -> GitServer:
    return GitServer(provider="local", root=tmp_path / "git")


def source(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "source"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_publish_then_checkout_the_exact_commit(server: GitServer, tmp_path: Path) -> None:
    create_repository(server, "svc")
    assert head_commit(server, "svc") is None
    first = publish_directory(server, "svc", source(tmp_path, {"a.txt": "1"}), message="one")
    assert publish_directory(server, "svc", tmp_path / "source", message="same") == first
    (tmp_path / "source" / "a.txt").write_text("2")
    second = publish_directory(server, "svc", tmp_path / "source", message="two")
    assert second != first and head_commit(server, "svc") == second

    with checkout(server, "svc", first) as old:
        assert old.sha == first and (old.path / "a.txt").read_text() == "1"
        workspace = old.path
    assert not workspace.exists(), "the workspace outlived its checkout"
    with checkout(server, "svc", first[:10]) as short:
        assert short.sha == first
    with checkout(server, "svc") as tip:
        assert tip.sha == second and tip.ref == "main"


def test_a_kept_checkout_follows_each_commit_and_holds_only_its_files(
    server: GitServer, tmp_path: Path
) -> None:
    create_repository(server, "svc")
    root = source(tmp_path, {"a.txt": "1", "same.txt": "s", "gone.txt": "g"})
    first = publish_directory(server, "svc", root, message="one")
    kept = tmp_path / "kept" / "svc"
    with checkout(server, "svc", kept=kept) as co:
        assert co.path == kept and co.sha == first and (kept / "gone.txt").read_text() == "g"
    assert kept.is_dir(), "a kept checkout is kept"
    before = (kept / "same.txt").stat().st_mtime_ns
    (kept / "stray.txt").write_text("left by someone")
    (kept / "a.txt").write_text("edited in place")
    (root / "a.txt").write_text("2")
    (root / "gone.txt").unlink()
    second = publish_directory(server, "svc", root, message="two")
    tag_commit(server, "svc", "v1", second)

    with checkout(server, "svc", kept=kept) as co:
        assert co.sha == second and co.ref == "main"
        files = sorted(p.name for p in kept.iterdir() if p.name != ".git")
        assert files == ["a.txt", "same.txt"] and (kept / "a.txt").read_text() == "2"
        assert (kept / "same.txt").stat().st_mtime_ns == before, "an unchanged file was rewritten"
        assert "v1" in {t.name for t in git.Repo(kept).tags}
    with checkout(server, "svc", first, kept=kept) as co:
        assert co.sha == first and (kept / "a.txt").read_text() == "1"
    # It lives in the platform's home: nothing in it is for anyone but the owner.
    shared = [
        f"{p} {p.stat().st_mode & 0o777:o}" for p in kept.rglob("*") if p.stat().st_mode & 0o077
    ]
    assert shared == []


def test_a_kept_checkout_that_git_cannot_use_is_cloned_again(
    server: GitServer, tmp_path: Path
) -> None:
    create_repository(server, "svc")
    sha = publish_directory(server, "svc", source(tmp_path, {"a.txt": "1"}), message="one")
    kept = tmp_path / "kept" / "svc"
    kept.mkdir(parents=True)
    (kept / "junk").write_text("not a repository")
    with checkout(server, "svc", kept=kept) as co:
        assert co.sha == sha and sorted(p.name for p in kept.iterdir()) == [".git", "a.txt"]
    (kept / ".git" / "HEAD").write_text("garbage")  # damaged, e.g. by a crash
    with checkout(server, "svc", kept=kept) as co:
        assert co.sha == sha and (kept / "a.txt").read_text() == "1"
    other = GitServer(provider="local", root=tmp_path / "elsewhere")
    create_repository(other, "svc")
    moved = publish_directory(other, "svc", source(tmp_path / "b", {"b.txt": "2"}), message="b")
    with checkout(other, "svc", kept=kept) as co:  # another server: its own clone
        assert co.sha == moved and sorted(p.name for p in kept.iterdir()) == [".git", "b.txt"]
    with (
        pytest.raises(GitError, match="neither a branch nor a commit"),
        checkout(other, "svc", "0" * 40, kept=kept),
    ):
        pass


def test_publish_replaces_the_tree_so_removed_files_go(server: GitServer, tmp_path: Path) -> None:
    create_repository(server, "svc")
    root = source(tmp_path, {"keep.txt": "k", "drop.txt": "d"})
    publish_directory(server, "svc", root, message="both")
    (root / "drop.txt").unlink()
    sha = publish_directory(server, "svc", root, message="one")
    tree = git.Repo(server.root / "svc.git").commit(sha).tree
    assert [b.name for b in tree.blobs] == ["keep.txt"]


def test_unknown_commits_and_option_like_refs_are_refused(
    server: GitServer, tmp_path: Path
) -> None:
    create_repository(server, "svc")
    publish_directory(server, "svc", source(tmp_path, {"a": "1"}), message="one")
    with (
        pytest.raises(GitError, match="neither a branch nor a commit"),
        checkout(server, "svc", "0" * 40),
    ):
        pass
    with pytest.raises(InvalidRequest), checkout(server, "svc", "--upload-pack=touch /tmp/x"):
        pass
    with pytest.raises(GitError, match="no repository 'ghost'"):
        head_commit(server, "ghost")


def test_a_tag_is_never_moved(server: GitServer, tmp_path: Path) -> None:
    create_repository(server, "tpl")
    one = publish_directory(server, "tpl", source(tmp_path, {"a": "1"}), message="one")
    assert tag_commit(server, "tpl", "v1.0.0", one) == one
    (tmp_path / "source" / "a").write_text("2")
    two = publish_directory(server, "tpl", tmp_path / "source", message="two")
    assert tag_commit(server, "tpl", "v1.0.0", two) == one


def test_delete_is_idempotent(server: GitServer) -> None:
    create_repository(server, "svc")
    assert repository_exists(server, "svc")
    assert delete_repository(server, "svc") is True
    assert delete_repository(server, "svc") is False
    assert not repository_exists(server, "svc")


def _shared(path: Path) -> list[str]:
    """Paths under ``path`` that grant group or others anything."""
    found = [path, *path.rglob("*")]
    return [f"{p} {p.stat().st_mode & 0o777:o}" for p in found if p.stat().st_mode & 0o077]


def test_a_reinstalled_hook_file_is_private_whatever_mode_it_had(
    server: GitServer, tmp_path: Path
) -> None:
    hook = PushHook("http://127.0.0.1:1/hooks/github", SecretStr("s3cret-value"), tmp_path / "s")
    repository = create_repository(server, "svc", hook=hook)
    settings = repository / "slipway-hook.json"
    settings.chmod(0o644)  # left so by an older Slipway, or a careless hand
    (repository / "hooks" / "post-receive").chmod(0o755)
    install_push_hook(repository, hook)
    assert settings.stat().st_mode & 0o777 == 0o600
    assert (repository / "hooks" / "post-receive").stat().st_mode & 0o777 == 0o700
    assert "s3cret-value" in settings.read_text()


def test_a_push_under_an_open_umask_still_writes_private_files(
    server: GitServer, tmp_path: Path
) -> None:
    repository = create_repository(server, "svc")
    for path in [repository, *repository.rglob("*")]:  # as a home from before this rule
        path.chmod(path.stat().st_mode & ~0o077)
    previous = os.umask(0o022)  # a developer's shell
    try:
        publish_directory(server, "svc", source(tmp_path, {"a.txt": "1"}), message="one")
    finally:
        os.umask(previous)
    assert _shared(repository) == []


def test_a_checkout_under_the_platforms_umask_has_git_modes_in_a_private_workspace(
    server: GitServer, tmp_path: Path
) -> None:
    """An image built from a checkout copies its modes: its non-root user must read them."""
    repository = create_repository(server, "svc")
    tree = source(tmp_path, {"app/main.py": "print(1)\n", "run.sh": "#!/bin/sh\n"})
    (tree / "run.sh").chmod(0o755)
    publish_directory(server, "svc", tree, message="one")
    with private_umask(), checkout(server, "svc") as done:
        modes = {
            str(p.relative_to(done.path)): p.stat().st_mode & 0o777
            for p in done.path.rglob("*")
            if ".git" not in p.parts
        }
        workspace = done.path.parent.stat().st_mode & 0o777
    assert modes == {"app": 0o755, "app/main.py": 0o644, "run.sh": 0o755}
    assert workspace == 0o700
    assert _shared(repository) == []  # the clone's hard-linked objects kept their modes


def test_a_repository_made_under_an_open_umask_is_private_from_the_start(
    server: GitServer, tmp_path: Path
) -> None:
    previous = os.umask(0o022)  # a script of the platform team's, run from their shell
    try:
        hook = PushHook("http://127.0.0.1:1/hooks/github", SecretStr("s"), tmp_path / "s")
        repository = create_repository(server, "svc", hook=hook)
        create_repository(server, "svc", hook=hook)  # again: idempotent, still private
    finally:
        os.umask(previous)
    assert _shared(repository) == []


RUN_PACKAGES = ("slipway", "tasks", "blocks", "deployments", "flows")


def test_a_hook_installed_by_a_run_from_a_checkout_never_runs_that_checkouts_code(
    server: GitServer, tmp_path: Path
) -> None:
    """On a worker host a run's code is a checkout (`slipway.checkouts`), pruned later."""
    from tests.deployments.webhook_helpers import commit_and_push

    project = Path(__file__).resolve().parents[2]
    run_code = tmp_path / "checkouts" / ("c" * 40)
    for package in RUN_PACKAGES:
        shutil.copytree(
            project / package, run_code / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    repository = create_repository(server, "svc")
    spool = tmp_path / "spool"
    onboarding = (  # what onboarding does, with the checkout's code first on sys.path
        "import sys\n"
        "from pathlib import Path\n"
        "from pydantic import SecretStr\n"
        "import tasks.git as g\n"
        f"assert Path(g.__file__).is_relative_to({str(run_code)!r}), g.__file__\n"
        "hook = g.PushHook('http://127.0.0.1:1/hooks/github', SecretStr('s'), Path(sys.argv[2]))\n"
        "g.install_push_hook(Path(sys.argv[1]), hook)\n"
    )
    subprocess.run(
        [sys.executable, "-c", onboarding, str(repository), str(spool)],
        cwd=run_code,
        check=True,
        timeout=60,
    )
    assert str(run_code) not in (repository / "hooks" / "post-receive").read_text()
    # Its checkout directory now holds something else: another commit's code, or half
    # of it while the prune removes it. The hook must not run that.
    (run_code / "deployments" / "post_receive.py").write_text("def main():\n    return 0\n")

    sha, pushed = commit_and_push(repository, tmp_path / "work", "README.md")

    assert pushed.returncode == 0, pushed.stderr
    assert "unavailable" not in pushed.stderr and "for redelivery" in pushed.stderr
    [spooled] = spool.glob("*.json")
    assert json.loads(json.loads(spooled.read_text())["body"])["after"] == sha


def test_a_pushers_python_path_cannot_replace_the_hooks_code(
    server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A developer's ``PYTHONPATH`` often holds a project with a ``deployments`` package."""
    from testkit.platform import free_port
    from tests.deployments.webhook_helpers import commit_and_push

    theirs = tmp_path / "their-project"
    (theirs / "deployments").mkdir(parents=True)
    (theirs / "deployments" / "__init__.py").write_text("")
    (theirs / "deployments" / "post_receive.py").write_text("def main():\n    return 0\n")
    spool = tmp_path / "spool"
    hook = PushHook(f"http://127.0.0.1:{free_port()}/hooks/github", SecretStr("s"), spool)
    repository = create_repository(server, "svc", hook=hook)

    monkeypatch.setenv("PYTHONPATH", str(theirs))  # the hook inherits the pusher's environment
    sha, pushed = commit_and_push(repository, tmp_path / "work", "README.md")

    assert pushed.returncode == 0, pushed.stderr
    assert "for redelivery" in pushed.stderr, pushed.stderr
    [spooled] = spool.glob("*.json")
    assert json.loads(json.loads(spooled.read_text())["body"])["after"] == sha


def test_reinstalling_a_hook_leaves_the_repository_config_untouched(
    server: GitServer, tmp_path: Path
) -> None:
    """A reader (the bridge's catalog look, a push) must never meet a config being rewritten."""
    hook = PushHook("http://127.0.0.1:1/hooks/github", SecretStr("s"), tmp_path / "s")
    repository = create_repository(server, "svc", hook=hook)
    config = repository / "config"
    os.utime(config, ns=(1_000_000_000, 1_000_000_000))  # any write would move it on
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    install_push_hook(repository, hook)  # as `slipway up` does at every start
    create_repository(server, "svc", hook=hook)
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    assert git.Repo(repository).config_reader().get_value("core", "sharedRepository") == 600


def test_a_hook_that_cannot_run_is_refused_before_the_repository_is_made(
    server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    def missing(**where: object) -> list[importlib.metadata.Distribution]:
        return []

    monkeypatch.setattr(importlib.metadata, "distributions", missing)
    hook_script.cache_clear()
    try:
        hook = PushHook("http://127.0.0.1:1/hooks/github", SecretStr("s"), tmp_path / "s")
        with pytest.raises(ConfigurationError, match="no installed slipway package"):
            create_repository(server, "svc", hook=hook)
    finally:
        hook_script.cache_clear()  # the real answer again for the tests after this one

    assert not repository_exists(server, "svc")
    assert server.root is not None and not (server.root / "svc.git").exists()
