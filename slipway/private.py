"""Files that belong to one user alone: the data directory and everything under it.

The data directory holds Prefect's database (and with it the key of every
Secret block), Terraform state, the registry's blobs, the artifact store and
the platform's keys. None of it may be readable by another user of the host,
so Slipway keeps three habits:

- `slipway up` runs with the umask `PRIVATE_UMASK`, which its children (the
  Prefect server, the registry, flow runs, Terraform) inherit: what they
  create is 0600 (0700 for directories and executables) from the start;
- `make_private` walks the directory at every `up` and takes away whatever
  group or others were granted, e.g. by a `git push` under another umask or by
  a home from before this rule, and `up` warns about each one it fixed;
- `write_private` writes a secret file atomically, 0600 from its first byte.

Only group and other bits are cleared: a hook keeps its owner's execute bit,
and git's read-only objects stay read-only (0400).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "Loosened", "make_private", "private_umask", "write_private"]

PRIVATE_UMASK = 0o077
"""Nothing for group or others: files 0600, directories 0700."""

_SHARED_BITS = 0o077


@dataclass(frozen=True)
class Loosened:
    """A path under the data directory that granted access to others."""

    path: Path
    """The file or directory."""
    mode: int
    """Its permission bits as found, e.g. ``0o644``."""
    fixed: bool
    """Whether its group and other bits were cleared (False: it is not ours to change)."""

    def describe(self) -> str:
        """``prefect/prefect.db 0644 -> 0600``, or why it could not be changed."""
        after = f"{self.mode & ~_SHARED_BITS:04o}" if self.fixed else "unchanged (not our file)"
        return f"{self.path} {self.mode:04o} -> {after}"


def make_private(root: Path) -> list[Loosened]:
    """Clear the group and other bits of ``root`` and of everything below it.

    Symbolic links are neither followed nor changed (their mode means
    nothing); a file of another owner is reported, not changed.

    Returns:
        Each path that granted something to others, in walk order.
    """
    found: list[Loosened] = []
    for path in _walk(root):
        try:
            info = path.lstat()
        except FileNotFoundError:  # removed while we walked, e.g. a finished flow run's scratch
            continue
        if stat.S_ISLNK(info.st_mode) or not info.st_mode & _SHARED_BITS:
            continue
        mode = stat.S_IMODE(info.st_mode)
        try:
            path.chmod(mode & ~_SHARED_BITS, follow_symlinks=False)
        except PermissionError:
            found.append(Loosened(path, mode, fixed=False))
            continue
        except FileNotFoundError:
            continue
        found.append(Loosened(path, mode, fixed=True))
    return found


def _walk(root: Path) -> Iterator[Path]:
    if not root.exists():
        return
    yield root
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        base = Path(directory)
        for name in (*subdirectories, *files):
            yield base / name


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run the block, and every process it starts, with `PRIVATE_UMASK`."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def write_private(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Write ``path`` atomically, readable and writable by its owner only.

    The content goes to a temporary file beside it, of ``mode`` from its
    first byte (0600, or 0700 for a script), that then replaces ``path``, so
    no reader ever sees half of it and at no moment is it open to others,
    whatever the umask and whatever mode an earlier file had.
    """
    if mode & _SHARED_BITS:
        raise ValueError(f"mode {mode:04o} grants group or others access")
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    for directory in reversed(missing):  # each new one private, not only the last
        directory.mkdir(mode=0o700, exist_ok=True)
    content = data.encode() if isinstance(data, str) else data
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
