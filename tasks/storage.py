"""The artifact store: scan reports, SBOMs and published docs behind one interface.

Flows write through :class:`ObjectStore` and the docs portal reads through it, so
neither knows whether artifacts live in a directory or an S3 bucket. Both take the
same keys (:func:`check_key`) and report the same ETags, so an artifact copied from
one to the other keeps both. Get one with ``open_store(ArtifactStore.load("default"))``.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as EndpointError

from slipway.errors import ConfigurationError, InvalidRequest, ObjectNotFound, StorageError

if TYPE_CHECKING:
    from blocks.artifact_store import ArtifactStore
    from blocks.s3 import S3Connection

__all__ = ["LocalStore", "ObjectStore", "S3Store", "StoredObject", "check_key", "open_store"]

logger = logging.getLogger(__name__)

_PARTIAL = ".slipway-partial-"  # a LocalStore write in progress; reserved so list() skips it
_PAGE_SIZE = 1000  # keys per list_objects_v2 request, S3's maximum; tests lower it
_TIMEOUTS = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"max_attempts": 3},
    max_pool_connections=32,  # parallel readers (SBOMs, docs) each keep a connection
)
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_LIST_HINT = "list() the store to see which keys it holds"


def _problem(value: str) -> str | None:
    """The rule that a key (or a prefix without its final '/') breaks, if any."""
    parts = value.split("/")
    rules = (
        (not value, "must not be empty"),
        ("\x00" in value, "must not contain NUL characters"),
        ("\\" in value, "must not contain backslashes; separate segments with '/'"),
        (value.startswith("/"), "must be relative (no leading '/')"),
        ("" in parts, "must not contain empty segments ('a//b' or a trailing '/')"),
        ("." in parts or ".." in parts, "must not contain '.' or '..' segments"),
        (any(p.startswith(_PARTIAL) for p in parts), f"must not use the reserved {_PARTIAL!r}"),
        (len(value.encode(errors="replace")) > 1024, "must be at most 1024 bytes (S3's limit)"),
    )
    return next((rule for broken, rule in rules if broken), None)


def check_key(key: str) -> str:
    """Refuse a key that could leave the store or mean different things to S3 and a disk.

    Keys are '/'-separated relative paths such as ``payments/3f2a/scan.sarif``; they
    often come from URLs (the docs portal), so every store checks them before any I/O.

    Raises:
        InvalidRequest: naming the rule that the key breaks.
    """
    if problem := _problem(key):
        raise InvalidRequest(f"key {key!r} {problem}", hint="use a path like 'service/sha/file'")
    return key


def _check_prefix(prefix: str) -> str:
    """Like :func:`check_key`, but a prefix may also be empty or end with '/'."""
    body = prefix[:-1] if len(prefix) > 1 and prefix.endswith("/") else prefix
    if prefix and (problem := _problem(body)):
        raise InvalidRequest(f"prefix {prefix!r} {problem}", hint="use a path like 'service/'")
    return prefix


@dataclass(frozen=True)
class StoredObject:
    """What a store knows about one object, short of its content."""

    key: str
    """The key as the caller gave it (without an S3 store's prefix)."""
    size: int
    """Length of the content in bytes."""
    etag: str
    """MD5 hex of the content; S3's ETag equals it for objects put in one part, as here."""


class ObjectStore(ABC):
    """A flat map from keys to bytes; every method checks its key before any I/O."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:
        """Store ``data`` under ``key``, replacing what is there; readers see old or new."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The content under ``key``; raises ObjectNotFound when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under exactly ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[StoredObject]:
        """Every object whose key starts with ``prefix``, at any depth, sorted by key."""

    def keys(self, prefix: str = "") -> builtins.list[str]:
        """The keys `list` would give, sorted; a store that must read objects for ETags skips that."""
        return [o.key for o in self.list(prefix)]

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key``; a missing key is not an error."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError with a fix hint unless the store can be used now."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages; never contains a secret."""


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
        temp = path.parent / f"{_PARTIAL}{uuid.uuid4().hex}"
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
            raise ObjectNotFound(f"no object {key!r} in {self._root}", hint=_LIST_HINT) from e
        except OSError as e:
            raise self._fail("read", key, e) from e

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
        base = _check_prefix(prefix).rpartition("/")[0]  # the directory holding every match
        root, found = self._root.resolve(), []
        if not (root / base).resolve().is_relative_to(root):
            return []  # a symlink out of the store: nothing in it is an object
        skip = len(str(root)) + 1  # a key is the path after the root's
        try:  # os.walk never enters a symlinked directory below its start
            for top, _, names in os.walk(root / base):
                for path in (Path(top) / name for name in names):
                    key = str(path)[skip:]
                    if not key.startswith(prefix) or _problem(key):  # not partials
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
        probe = self._root / f"{_PARTIAL}check-{uuid.uuid4().hex}"
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


class S3Store(ObjectStore):
    """Objects in ``bucket`` under ``prefix``, on AWS or any S3-compatible endpoint.

    ``prefix`` gains a final '/' if it lacks one. Pass ``client`` to reuse a boto3
    S3 client; otherwise one is built from ``connection`` with short timeouts.
    """

    def __init__(
        self, *, bucket: str, prefix: str, connection: S3Connection, client: Any | None = None
    ) -> None:
        self._bucket, self._connection = bucket, connection
        self._prefix = _check_prefix(prefix).removesuffix("/") + "/" if prefix else ""
        if client is None:
            kwargs = connection.client_kwargs()
            own = kwargs.get("config")
            kwargs["config"] = _TIMEOUTS if own is None else _TIMEOUTS.merge(own)
            client = boto3.client("s3", **kwargs)
        self._client = client

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Turn botocore's errors into ours; S3's own text stays in ``__cause__``."""
        try:
            yield
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, action) from e

    def _fail(self, e: Exception, action: str) -> StorageError:
        code = (
            str(e.response.get("Error", {}).get("Code", "")) if isinstance(e, ClientError) else ""
        )
        url, region = self._connection.endpoint_url, self._connection.region
        host = urlsplit(url).netloc.rpartition("@")[2] if url else f"AWS {region}"  # no userinfo
        what, hint = f"cannot {action} {self.describe()} at {host}", None
        reason = code or type(e).__name__
        if code == "NoSuchKey":
            return ObjectNotFound(f"{what}: no such key", hint=_LIST_HINT)
        if isinstance(e, EndpointError):
            reason, hint = "endpoint unreachable", "check the S3 connection's endpoint_url"
        elif isinstance(e, NoCredentialsError):
            reason, hint = "no credentials", "set the S3 connection's keys or boto3's chain"
        elif code in _NO_BUCKET:
            reason = f"bucket {self._bucket!r} does not exist"
            hint = "create it with S3Store.ensure_bucket() (`slipway up` does) or fix `bucket`"
        elif code in _DENIED:
            reason, hint = f"access denied ({code})", "check the S3 connection's keys and policy"
        return StorageError(f"{what}: {reason}", hint=hint)

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:  # noqa: D102
        name, extra = self._name(key), {"ContentType": content_type} if content_type else {}
        with self._call(f"write {key!r} to"):
            sent = self._client.put_object(Bucket=self._bucket, Key=name, Body=data, **extra)
        return StoredObject(key, len(data), str(sent["ETag"]).strip('"'))

    def get(self, key: str) -> bytes:  # noqa: D102
        name = self._name(key)
        with self._call(f"read {key!r} from"):
            body = self._client.get_object(Bucket=self._bucket, Key=name)["Body"]
            data: bytes = body.read()
        return data

    def exists(self, key: str) -> bool:  # noqa: D102
        name = self._name(key)
        with self._call(f"look up {key!r} in"):
            try:
                self._client.head_object(Bucket=self._bucket, Key=name)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return False  # a HEAD has no body, so a missing bucket looks the same
                raise
        return True

    def list(self, prefix: str = "") -> list[StoredObject]:  # noqa: D102
        start, found = self._prefix + _check_prefix(prefix), []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=start, PaginationConfig={"PageSize": _PAGE_SIZE}
        )
        with self._call(f"list {prefix!r} in"):
            for item in (item for page in pages for item in page.get("Contents", [])):
                key = str(item["Key"])[len(self._prefix) :]
                if not _problem(key):  # skip what get() would refuse, e.g. 'a//b'
                    found.append(StoredObject(key, int(item["Size"]), item["ETag"].strip('"')))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:  # noqa: D102
        name = self._name(key)
        with self._call(f"delete {key!r} from"):
            self._client.delete_object(Bucket=self._bucket, Key=name)

    def check(self) -> None:  # noqa: D102
        with self._call("use"):
            self._client.head_bucket(Bucket=self._bucket)

    def describe(self) -> str:  # noqa: D102
        return f"s3://{self._bucket}/{self._prefix}"

    def ensure_bucket(self, *, versioning: bool = False) -> None:
        """Create the bucket unless it exists; ``versioning`` keeps overwritten objects."""
        region = self._connection.region
        location = {"LocationConstraint": region}  # AWS refuses one for us-east-1
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": location}
        with self._call("create"):
            try:  # BucketAlreadyExists, by contrast, means another account has the name
                self._client.create_bucket(Bucket=self._bucket, **where)
                logger.info("created bucket %s", self._bucket)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            if versioning:
                enabled = {"Status": "Enabled"}
                self._client.put_bucket_versioning(
                    Bucket=self._bucket, VersioningConfiguration=enabled
                )


def open_store(block: ArtifactStore) -> ObjectStore:
    """The store that an ArtifactStore block describes; makes no request yet."""
    if block.kind == "local" and block.local_path is not None:
        return LocalStore(block.local_path / block.prefix if block.prefix else block.local_path)
    if block.kind == "s3" and block.bucket is not None:
        from blocks.s3 import S3Connection  # blocks import Prefect; keep this module light

        connection = block.s3 if block.s3 is not None else S3Connection()
        return S3Store(bucket=block.bucket, prefix=block.prefix, connection=connection)
    hint = "edit the slipway-artifact-store block; its validation should have said so"
    raise ConfigurationError(f"the {block.kind} artifact store has no location", hint=hint)
