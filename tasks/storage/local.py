"""The artifact store as a directory: one file per object, written atomically."""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import os
import uuid
from contextlib import suppress
from pathlib import Path

from slipway.errors import InvalidRequest, ObjectNotFound, StorageError, WriteConflict
from tasks.storage.base import (
    LIST_HINT,
    PARTIAL,
    ObjectStore,
    StoredObject,
    check_key,
    check_prefix,
    key_problem,
)

__all__ = ["LocalStore"]


class LocalStore(ObjectStore):
    """Objects as files under ``root``; a key is the file's path relative to it.

    A write goes to a temporary file beside its target and is renamed into place, so
    the docs portal never serves half a file. ``content_type`` is not kept: readers
    guess it from the key's extension.
    """

    def __init__(self, root: Path) -> None:
        self._root = root.absolute()

    def _path(self, key: str) -> Path:
        """The file for ``key``, refusing one that a symlink leads out of the root."""
        relative = check_key(key)
        root = self._root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            hint = "remove symlinks that point out of the store's directory"
            raise InvalidRequest(f"key {key!r} leads out of {self._root} by a symlink", hint=hint)
        return path

    def _fail(self, action: str, key: str, e: OSError) -> StorageError:
        hint = "make it a directory Slipway's user can write, or change the block's local_path"
        reason = e.strerror or type(e).__name__
        return StorageError(f"cannot {action} {key!r} in {self._root}: {reason}", hint=hint)

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:  # noqa: D102
        path = self._path(key)
        temp = path.parent / f"{PARTIAL}{uuid.uuid4().hex}"
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("xb") as f:
                f.write(data)
                f.flush()
                _remember_etag(f.fileno(), os.fstat(f.fileno()), etag)
                os.fsync(f.fileno())  # else a crash could leave the renamed file empty
            temp.replace(path)
        except OSError as e:
            with suppress(OSError):
                temp.unlink()
            raise self._fail("write", key, e) from e
        return StoredObject(key, len(data), etag)

    def get(self, key: str) -> bytes:  # noqa: D102
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFound(f"no object {key!r} in {self._root}", hint=LIST_HINT) from e
        except OSError as e:
            raise self._fail("read", key, e) from e

    def get_with_etag(self, key: str) -> tuple[bytes, str]:  # noqa: D102
        data = self.get(key)
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    def put_if(  # noqa: D102
        self, key: str, data: bytes, *, etag: str | None, content_type: str | None = None
    ) -> StoredObject:
        path = self._path(key)
        # Writers of one key take turns on a lock file beside it, which list() skips.
        name = hashlib.md5(path.name.encode(), usedforsecurity=False).hexdigest()
        lock = path.parent / f"{PARTIAL}lock-{name}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with lock.open("a") as held:
                fcntl.flock(held.fileno(), fcntl.LOCK_EX)
                try:
                    current: str | None = _etag(path)[1]
                except FileNotFoundError:
                    current = None
                if current != etag:
                    raise WriteConflict(
                        f"{key!r} in {self._root} changed since it was read",
                        hint="read it again, apply the change, and write it back",
                    )
                return self.put(key, data, content_type=content_type)
        except OSError as e:
            raise self._fail("write", key, e) from e

    def exists(self, key: str) -> bool:  # noqa: D102
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[StoredObject]:  # noqa: D102
        found = []
        for key, path in self._walk(prefix):
            with suppress(FileNotFoundError):  # deleted since
                found.append(StoredObject(key, *_etag(path)))
        return found

    def keys(self, prefix: str = "") -> builtins.list[str]:  # noqa: D102
        return [key for key, _ in self._walk(prefix)]

    def _walk(self, prefix: str) -> builtins.list[tuple[str, Path]]:
        """The key and file of every object under ``prefix``, sorted by key."""
        base = check_prefix(prefix).rpartition("/")[0]  # the directory holding every match
        root, found = self._root.resolve(), []
        if not (root / base).resolve().is_relative_to(root):
            return []  # a symlink out of the store: nothing in it is an object
        skip = len(str(root)) + 1  # a key is the path after the root's
        try:  # os.walk never enters a symlinked directory below its start
            for top, _, names in os.walk(root / base):
                for path in (Path(top) / name for name in names):
                    key = str(path)[skip:]
                    if not key.startswith(prefix) or key_problem(key):  # not partials
                        continue
                    if not path.is_symlink() or path.resolve().is_relative_to(root):
                        found.append((key, path))
        except OSError as e:
            raise self._fail("list", prefix, e) from e
        return sorted(found)

    def delete(self, key: str) -> None:  # noqa: D102
        path = self._path(key)
        try:
            if path.is_file():
                path.unlink(missing_ok=True)
        except OSError as e:
            raise self._fail("delete", key, e) from e

    def check(self) -> None:  # noqa: D102
        probe = self._root / f"{PARTIAL}check-{uuid.uuid4().hex}"
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise self._fail("write", probe.name, e) from e

    def describe(self) -> str:  # noqa: D102
        return str(self._root)


_ETAG_ATTRIBUTE = "user.slipway.etag"
"""A stored file's MD5, with the size and modification time it was taken at."""


def _remember_etag(fd: int, seen: os.stat_result, etag: str) -> None:
    """Keep ``etag`` beside the file's content, where the filesystem allows it."""
    with suppress(OSError):  # no extended attributes there: listing hashes the file
        os.setxattr(fd, _ETAG_ATTRIBUTE, f"{seen.st_size} {seen.st_mtime_ns} {etag}".encode())


def _etag(path: Path) -> tuple[int, str]:
    """A stored file's size and MD5: the one kept when it was written, if it is still its own.

    The kept MD5 counts only while the file has the size and modification
    time it had then; a file written any other way is hashed (and its MD5
    kept for the next listing).
    """
    with path.open("rb") as f:
        seen = os.fstat(f.fileno())
        with suppress(OSError, ValueError):
            size, modified, etag = os.getxattr(f.fileno(), _ETAG_ATTRIBUTE).decode().split()
            if (int(size), int(modified)) == (seen.st_size, seen.st_mtime_ns) and len(etag) == 32:
                return seen.st_size, etag
        md5 = hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
        _remember_etag(f.fileno(), seen, md5)
        return seen.st_size, md5
