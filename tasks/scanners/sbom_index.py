"""The SBOM index: every service's current components in 16 objects, so impact reads 16, not 2,000.

Advisory impact needs each service's newest default-branch scan and the
components of its SBOM. Read from the scans themselves that is two reads
per service (the history, then the SBOM); the index keeps both, written by
the scan, in a few shared objects:

- ``_slipway/sbom-index/v1/<x>.json`` for ``x`` in ``0``-``f``, the first hex
  digit of the service name's SHA-256, each holding its services' entries:
  ``{"services": {"payments": {"sha": "3f2a...", "components": [["PyPI",
  "requests", "2.31.0"], ...]}}}``. ``components`` is null when that scan
  has no readable SBOM; ``sha`` is null when the default branch was never
  scanned.

A default-branch scan (`tasks.scanners.history.save_scan`) writes a
service's entry just before its history, with a conditional write
(`ObjectStore.put_if`) retried on conflict, so scans finishing at once never drop each other's entries, and
a scan whose entry cannot be written fails before its history moves. Readers
(`tasks.scanners.impact.current_sboms`) treat a service with no entry (a
store written before the index) the old way, from its history and SBOM,
say so in a warning and `fill_in` the entry, unless a scan wrote one since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from slipway.errors import ObjectNotFound, StorageError, WriteConflict
from tasks.osv_mirror import normalize_name
from tasks.storage import ObjectStore

__all__ = [
    "INDEX_PREFIX",
    "Component",
    "IndexEntry",
    "IndexSnapshot",
    "fill_in",
    "index_sbom",
    "parse_components",
    "read_index",
    "refresh_sbom",
    "shard_key",
]

logger = logging.getLogger(__name__)

INDEX_PREFIX = "_slipway/sbom-index/v1/"
"""Where the shards live; the version changes when `parse_components` or the format does."""
_SHARDS = "0123456789abcdef"
_ATTEMPTS = 20  # conditional writes of one shard before giving up
_ECOSYSTEMS = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "cargo": "crates.io",
    "gem": "RubyGems",
    "nuget": "NuGet",
}
"""purl types and the OSV ecosystem each one is."""


@dataclass(frozen=True)
class Component:
    """One package an SBOM lists."""

    ecosystem: str
    """OSV's ecosystem name, e.g. ``PyPI``."""
    name: str
    """Normalised as OSV compares it (PEP 503 for PyPI)."""
    version: str


def parse_components(document: bytes) -> tuple[Component, ...]:
    """The versioned packages a CycloneDX JSON document lists; others cannot be matched.

    The index keeps what this returns: change `INDEX_PREFIX`'s version with it.

    Raises:
        ValueError: The document is not CycloneDX JSON.
    """
    bom = json.loads(document)
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise ValueError("not a CycloneDX JSON document")
    found: list[Component] = []
    for item in bom.get("components") or []:
        purl = str(item.get("purl") or "")
        kind = purl.removeprefix("pkg:").split("/", 1)[0] if purl.startswith("pkg:") else "pypi"
        ecosystem, version = _ECOSYSTEMS.get(kind), item.get("version")
        if ecosystem and version and item.get("name"):
            found.append(
                Component(ecosystem, normalize_name(ecosystem, str(item["name"])), str(version))
            )
    return tuple(found)


@dataclass(frozen=True)
class IndexEntry:
    """One service's newest default-branch scan and what its SBOM lists."""

    sha: str | None
    """None: the default branch was never scanned."""
    components: tuple[Component, ...] | None
    """None: that scan has no SBOM, or an unreadable one."""


class _Entry(BaseModel):
    sha: str | None
    components: list[tuple[str, str, str]] | None


class _Shard(BaseModel):
    services: dict[str, _Entry] = {}


@dataclass(frozen=True)
class IndexSnapshot:
    """Every shard as one read found it, with the ETags a `fill_in` writes over."""

    entries: dict[str, IndexEntry]
    etags: dict[str, str | None]
    """Shard key -> its ETag when read; None when it did not exist (or was unreadable)."""


def shard_key(service: str) -> str:
    """The object that holds ``service``'s entry."""
    return f"{INDEX_PREFIX}{hashlib.sha256(service.encode()).hexdigest()[0]}.json"


def index_sbom(store: ObjectStore, service: str, sha: str | None, sbom: bytes | None) -> None:
    """Make ``sha`` (with ``sbom``, its stored SBOM) ``service``'s current entry.

    Raises:
        StorageError: The shard could not be written, even after retries.
    """
    entry = _entry(service, sha, sbom)

    def change(shard: _Shard) -> bool:
        if shard.services.get(service) == entry:
            return False  # a rescan of an unchanged service writes nothing
        shard.services[service] = entry
        return True

    _update(store, shard_key(service), change)


def refresh_sbom(store: ObjectStore, service: str, sha: str, sbom: bytes) -> None:
    """Take ``sbom``, just stored again for ``sha``, into the entry if ``sha`` is the current one.

    Raises:
        StorageError: The shard could not be written, even after retries.
    """
    entry = _entry(service, sha, sbom)

    def change(shard: _Shard) -> bool:
        current = shard.services.get(service)
        if current is None or current.sha != sha or current == entry:
            return False
        shard.services[service] = entry
        return True

    _update(store, shard_key(service), change)


def _entry(service: str, sha: str | None, sbom: bytes | None) -> _Entry:
    components: list[tuple[str, str, str]] | None = None
    if sbom is not None:
        try:
            components = [_row(c) for c in parse_components(sbom)]
        except ValueError as e:
            logger.warning("the SBOM of %s at %s is unreadable: %s", service, (sha or "")[:12], e)
    return _Entry(sha=sha, components=components)


def read_index(store: ObjectStore) -> IndexSnapshot:
    """Every shard, read at once; a missing or unreadable shard holds no entry."""
    keys = [f"{INDEX_PREFIX}{x}.json" for x in _SHARDS]
    with ThreadPoolExecutor(max_workers=len(keys), thread_name_prefix="sbom-index") as pool:
        shards = list(pool.map(lambda k: _read_shard(store, k), keys))
    entries = {
        service: IndexEntry(
            entry.sha,
            None if entry.components is None else tuple(Component(*c) for c in entry.components),
        )
        for shard, _ in shards
        for service, entry in shard.services.items()
    }
    return IndexSnapshot(entries, {k: etag for k, (_, etag) in zip(keys, shards, strict=True)})


def fill_in(store: ObjectStore, snapshot: IndexSnapshot, entries: Mapping[str, IndexEntry]) -> None:
    """Add ``entries``, read the old way after ``snapshot``, where no scan wrote one since.

    A scan that wrote its entry after the snapshot changed the shard's ETag,
    so the write is retried on the shard as it is now, keeping that entry.
    A failure is logged, not raised: the next reader fills the entry in.
    """
    by_shard: dict[str, dict[str, _Entry]] = {}
    for service, entry in entries.items():
        components = None if entry.components is None else [_row(c) for c in entry.components]
        by_shard.setdefault(shard_key(service), {})[service] = _Entry(
            sha=entry.sha, components=components
        )
    for key, wanted in sorted(by_shard.items()):

        def change(shard: _Shard, wanted: dict[str, _Entry] = wanted) -> bool:
            new = {s: e for s, e in wanted.items() if s not in shard.services}
            shard.services.update(new)
            return bool(new)

        first = (_Shard(), snapshot.etags.get(key))
        try:
            if first[1] is not None:  # the snapshot kept entries only, so read it again
                first = _read_shard(store, key)
            _update(store, key, change, first)
        except StorageError as e:
            logger.warning("could not add %d entries to the SBOM index: %s", len(wanted), e)


def _row(c: Component) -> tuple[str, str, str]:
    return (c.ecosystem, c.name, c.version)


def _read_shard(store: ObjectStore, key: str) -> tuple[_Shard, str | None]:
    """The shard and its ETag; an empty one (ETag None) when there is none.

    An unreadable shard counts as empty but keeps its ETag, so the next
    write replaces it; its services are read the old way meanwhile.
    """
    try:
        data, etag = store.get_with_etag(key)
    except ObjectNotFound:
        return _Shard(), None
    try:
        return _Shard.model_validate_json(data), etag
    except ValidationError as e:
        logger.warning("ignoring the unreadable SBOM index shard %s: %s", key, e)
        return _Shard(), etag


def _update(
    store: ObjectStore,
    key: str,
    change: Callable[[_Shard], bool],
    first: tuple[_Shard, str | None] | None = None,
) -> None:
    """Apply ``change`` to the shard (``first``, else read now) and write it over its ETag; on conflict, again."""
    shard, etag = first if first is not None else _read_shard(store, key)
    for attempt in range(1, _ATTEMPTS + 1):
        if not change(shard):
            return
        data = shard.model_dump_json().encode()
        try:
            store.put_if(key, data, etag=etag, content_type="application/json")
            return
        except WriteConflict:
            time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311  # jitter, not secrets
            shard, etag = _read_shard(store, key)
    raise StorageError(
        f"could not update the SBOM index shard {key} in {_ATTEMPTS} attempts: "
        "other writers kept changing it",
        hint="run the scan again; its history is not updated until its index entry is",
    )
