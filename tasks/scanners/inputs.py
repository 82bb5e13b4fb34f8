"""What a scanner's result depends on, as one key: the files it reads, its version and its rules.

The nightly scan (`tasks.scanners.incremental`) takes a tool's result from
the service's last scan when this key is the same, so the key must name
everything that can change the result:

- the content of every file the tool reads (a digest over each path and
  its content; a symlink counts by where it points and is never followed,
  as the checkout is untrusted), ``.git/`` left out;
- the tool's version from the scanners' environment (`tasks.scanners.toolenv`);
- `RULES_VERSION` and the adapter's own settings (pip-audit's ignored ids,
  checkov's directory, the vulnerability data's revision).

A tool whose version is unknown (a binary given by path) has no key, and
always runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["RULES_VERSION", "file_digest", "input_key", "inventory", "tree_digest"]

RULES_VERSION = "1"
"""Bump when an adapter's arguments or parsing change what a tool reports for the same files."""

_SKIPPED = frozenset({".git"})


def inventory(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by '/'-separated relative path, with its content's digest.

    Read once per checkout; each tool's key takes the files it reads from it.
    A missing ``root`` is empty: the tool's own check reports it.
    """
    return {relative: _content(path) for relative, path in sorted(_files(root))}


def tree_digest(files: Mapping[str, bytes], include: Callable[[str], bool]) -> str:
    """SHA-256 over the files of an `inventory` whose relative path ``include`` takes."""
    digest = hashlib.sha256()
    for relative, content in files.items():
        if include(relative):
            digest.update(f"{relative}\0".encode() + content + b"\0")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of one file as `tree_digest` counts it; a missing file digests as such."""
    return hashlib.sha256(_content(path) if path.is_file() else b"missing").hexdigest()


def _content(path: Path) -> bytes:
    """A symlink by where it points (never followed), a file by its SHA-256."""
    if path.is_symlink():
        return b"link\0" + str(path.readlink()).encode()
    with path.open("rb") as f:
        return b"file\0" + hashlib.file_digest(f, "sha256").digest()


def input_key(tool: str, version: str | None, *parts: str) -> str | None:
    """The key of one tool's run over inputs digested in ``parts``; None when the version is unknown."""
    if version is None:
        return None
    text = "\0".join((tool, version, RULES_VERSION, *parts))
    return hashlib.sha256(text.encode()).hexdigest()


def _files(root: Path) -> list[tuple[str, Path]]:
    """Every file and symlink under ``root`` (symlinked directories are not entered)."""
    found = []
    for directory, names, files in os.walk(root):
        names[:] = [n for n in names if n not in _SKIPPED]
        base = Path(directory)
        found += [
            ((base / n).relative_to(root).as_posix(), base / n)
            for n in (*files, *(n for n in names if (base / n).is_symlink()))
        ]
    return found
