"""Private files: what `slipway up` takes from group and others, and how secrets are written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from slipway.private import PRIVATE_UMASK, make_private, private_umask, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_make_private_clears_group_and_other_bits_and_keeps_the_owners(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "prefect").mkdir(parents=True)
    database = root / "prefect" / "prefect.db"
    database.write_text("keys")
    database.chmod(0o644)
    hook = root / "post-receive"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    blob = root / "object"
    blob.write_text("git")
    blob.chmod(0o444)
    private = root / "already"
    private.write_text("x")
    private.chmod(0o600)
    root.chmod(0o755)
    (root / "prefect").chmod(0o755)

    found = make_private(root)

    assert {x.path: x.mode for x in found} == {
        root: 0o755,
        root / "prefect": 0o755,
        database: 0o644,
        hook: 0o755,
        blob: 0o444,
    }
    assert all(x.fixed for x in found)
    assert (_mode(root), _mode(root / "prefect"), _mode(database)) == (0o700, 0o700, 0o600)
    assert (_mode(hook), _mode(blob), _mode(private)) == (0o700, 0o400, 0o600)
    assert make_private(root) == []  # nothing left to fix
    described = {x.path: x.describe() for x in found}
    assert described[database] == f"{database} 0644 -> 0600"


def test_make_private_leaves_symlinks_and_what_they_point_at(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    (root / "link").symlink_to(outside)
    assert make_private(root) == []
    assert _mode(outside) == 0o644


def test_a_missing_directory_has_nothing_to_fix(tmp_path: Path) -> None:
    assert make_private(tmp_path / "nowhere") == []


def test_write_private_is_0600_over_an_older_open_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "secret"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new secret\n")
    assert path.read_text() == "new secret\n" and _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret"]


def test_private_umask_applies_inside_and_is_restored(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        with private_umask():
            (tmp_path / "made").write_text("x")
            (tmp_path / "dir").mkdir()
            assert os.umask(PRIVATE_UMASK) == PRIVATE_UMASK
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    assert _mode(tmp_path / "made") == 0o600 and _mode(tmp_path / "dir") == 0o700


def test_write_private_makes_every_missing_directory_private(tmp_path: Path) -> None:
    path = tmp_path / "new-home" / "keys" / "secret"
    before = os.umask(0o022)
    try:
        write_private(path, "x")
    finally:
        os.umask(before)
    assert _mode(tmp_path / "new-home") == 0o700 and _mode(path.parent) == 0o700
