"""What every artifact store shares: the key rules, `StoredObject` and the `ObjectStore` interface."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from dataclasses import dataclass

from slipway.errors import InvalidRequest

__all__ = [
    "LIST_HINT",
    "PARTIAL",
    "ObjectStore",
    "StoredObject",
    "check_key",
    "check_prefix",
    "key_problem",
]

PARTIAL = ".slipway-partial-"  # a LocalStore write in progress; reserved so list() skips it
LIST_HINT = "list() the store to see which keys it holds"


def key_problem(value: str) -> str | None:
    """The rule that a key (or a prefix without its final '/') breaks, if any."""
    parts = value.split("/")
    rules = (
        (not value, "must not be empty"),
        ("\x00" in value, "must not contain NUL characters"),
        ("\\" in value, "must not contain backslashes; separate segments with '/'"),
        (value.startswith("/"), "must be relative (no leading '/')"),
        ("" in parts, "must not contain empty segments ('a//b' or a trailing '/')"),
        ("." in parts or ".." in parts, "must not contain '.' or '..' segments"),
        (any(p.startswith(PARTIAL) for p in parts), f"must not use the reserved {PARTIAL!r}"),
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
    if problem := key_problem(key):
        raise InvalidRequest(f"key {key!r} {problem}", hint="use a path like 'service/sha/file'")
    return key


def check_prefix(prefix: str) -> str:
    """Like :func:`check_key`, but a prefix may also be empty or end with '/'."""
    body = prefix[:-1] if len(prefix) > 1 and prefix.endswith("/") else prefix
    if prefix and (problem := key_problem(body)):
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
    def put_if(
        self, key: str, data: bytes, *, etag: str | None, content_type: str | None = None
    ) -> StoredObject:
        """Store ``data`` only if ``key`` still holds ``etag``, or nothing when ``etag`` is None.

        A compare-and-swap, for objects that concurrent writers update
        (read with `get_with_etag`, change, write back, retry on conflict).

        Raises:
            WriteConflict: The object changed (or appeared, or vanished) since it was read.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The content under ``key``; raises ObjectNotFound when there is none."""

    @abstractmethod
    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The content under ``key`` and its ETag, for a later `put_if`; ObjectNotFound if none."""

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
