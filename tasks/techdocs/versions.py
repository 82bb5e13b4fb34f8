"""Versions of a site that share their files: a manifest per version, each distinct file stored once.

Layout, under the store's ``techdocs/`` prefix::

    default/component/<service>/versions/<label>/manifest.json            path -> content id
    default/component/<service>/versions/<label>/techdocs_metadata.json
    .objects/<service>/<sha256>                                            one per distinct file

A version used to be a full copy of its site, so publishing after a one-page
change sent every file again under the new label. Now a version is its
manifest: publishing sends only the files no kept version has yet, on a
local store and on S3 alike, and unchanged files are shared by every
version. Objects sit outside the site's prefix, so the current site, which
stays in TechDocs' own layout, is listed and read exactly as before.

Readers go through `DocsReader`, which serves ``versions/<label>/<path>`` from
the manifest (and an older full copy as it is). `collect_garbage` drops the
objects no kept version names.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from slipway.errors import ObjectNotFound
from tasks.storage import ObjectStore
from tasks.techdocs.build import RESERVED
from tasks.techdocs.layout import SITES_PREFIX, objects_prefix, site_prefix, versions_prefix

__all__ = [
    "MANIFEST",
    "DocsReader",
    "VersionEntry",
    "VersionManifest",
    "collect_garbage",
    "parallel",
    "prune_versions",
    "put_version",
    "read_versions",
    "write_version_entry",
]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
"""A version's list of files."""
_WORKERS = 8  # parallel requests; S3 round-trips dominate, not CPU
_MANIFEST_TTL = 10.0  # seconds a reader trusts a manifest it read; a label is rarely republished
_VERSIONS_INDEX = f"{RESERVED}/index.json"


class VersionEntry(BaseModel):
    """One kept version under ``versions/``."""

    model_config = ConfigDict(frozen=True)

    name: str
    commit: str
    ref: str
    build_timestamp: int
    commit_timestamp: int


class _VersionsIndex(BaseModel):
    versions: tuple[VersionEntry, ...] = ()


class VersionManifest(BaseModel):
    """Every file of one version, by its path in the site, and its content id (SHA-256)."""

    model_config = ConfigDict(frozen=True)

    files: dict[str, str]


def put_version(
    store: ObjectStore,
    service: str,
    version: str,
    site: Path,
    digests: Mapping[str, str],
    stored: Iterable[str] | None = None,
) -> tuple[list[str], int]:
    """Store the files of ``site`` no kept version has yet, then the version's manifest.

    Args:
        store: The artifact store.
        service: The service.
        version: The prefix of the version, ending with '/'.
        site: The built site.
        digests: Each file's path in the site and its SHA-256.
        stored: The keys under the service's objects, when already listed.

    Returns:
        The paths whose content was sent, and how many were already stored.
    """
    keys = store.keys(objects_prefix(service)) if stored is None else stored
    held = {key.rsplit("/", 1)[1] for key in keys}
    missing: dict[str, str] = {}
    for relative, digest in sorted(digests.items()):
        if digest not in held:
            missing.setdefault(digest, relative)

    def send(digest: str) -> None:
        path = site / missing[digest]
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        store.put(objects_prefix(service) + digest, path.read_bytes(), content_type=kind)

    parallel(send, list(missing))
    manifest = VersionManifest(files=dict(digests)).model_dump_json().encode()
    store.put(version + MANIFEST, manifest, content_type="application/json")  # after its files
    return sorted(missing.values()), len(digests) - len(missing)


def read_versions(store: ObjectStore, service: str) -> tuple[VersionEntry, ...]:
    """The kept versions of a service, newest build first."""
    try:
        raw = store.get(site_prefix(service) + _VERSIONS_INDEX)
    except ObjectNotFound:
        return ()
    try:
        return _VersionsIndex.model_validate_json(raw).versions
    except ValidationError:
        logger.warning("the versions index of %s is unreadable; treating it as empty", service)
        return ()


def write_version_entry(
    store: ObjectStore,
    service: str,
    entry: VersionEntry,
    before: tuple[VersionEntry, ...] | None = None,
) -> tuple[tuple[VersionEntry, ...], bool]:
    """Record (or refresh) ``entry`` in the versions index (``before``, when already read).

    Returns:
        The index as written, and whether it held a version of that name
        already (whose files the new one may no longer name).
    """
    before = read_versions(store, service) if before is None else before
    others = [v for v in before if v.name != entry.name]
    return _write_versions(store, service, [entry, *others]), len(others) != len(before)


def prune_versions(
    store: ObjectStore,
    service: str,
    keep: int,
    *,
    versions: tuple[VersionEntry, ...] | None = None,
    collect: bool = True,
    stored: Iterable[str] | None = None,
) -> tuple[str, ...]:
    """Delete every version but the ``keep`` newest builds, any the index forgot, and their files.

    Args:
        store: The artifact store.
        service: The service.
        keep: How many versions to keep.
        versions: The index, when the caller just wrote it; else it is read.
        collect: Look for shared files no version names even when no version
            goes: a version of the same name was replaced, or nothing is known.
        stored: The keys under ``versions/``, when listed already (before the
            kept versions were written: only keys of versions that go count).
    """
    listed = read_versions(store, service) if versions is None else versions
    ordered = sorted(listed, key=lambda v: -v.build_timestamp)
    kept, dropped = ordered[:keep], [v.name for v in ordered[keep:]]
    base = versions_prefix(service)
    names = {v.name for v in kept}
    doomed = [
        key
        for key in (store.keys(base) if stored is None else stored)
        if key != base + "index.json" and key[len(base) :].split("/", 1)[0] not in names
    ]
    if dropped:
        _write_versions(store, service, kept)
    parallel(store.delete, doomed)
    if collect or doomed:  # else no file lost the last version that named it
        collect_garbage(store, service, base)
    if dropped:
        logger.info("%s: removed old versions %s", service, ", ".join(dropped))
    return tuple(dropped)


def _write_versions(
    store: ObjectStore, service: str, versions: Iterable[VersionEntry]
) -> tuple[VersionEntry, ...]:
    ordered = tuple(sorted(versions, key=lambda v: -v.build_timestamp))
    body = _VersionsIndex(versions=ordered).model_dump_json(indent=2).encode()
    store.put(site_prefix(service) + _VERSIONS_INDEX, body, content_type="application/json")
    return ordered


def collect_garbage(store: ObjectStore, service: str, versions_prefix: str) -> tuple[str, ...]:
    """Delete the shared files that no manifest under ``versions_prefix`` names any more."""
    named: set[str] = set()
    manifests = [k for k in store.keys(versions_prefix) if k.endswith(f"/{MANIFEST}")]
    lock = threading.Lock()

    def read(key: str) -> None:
        files = _manifest(store, key).files.values()
        with lock:
            named.update(files)

    parallel(read, manifests)
    doomed = [k for k in store.keys(objects_prefix(service)) if k.rsplit("/", 1)[1] not in named]
    parallel(store.delete, doomed)
    return tuple(doomed)


def _manifest(store: ObjectStore, key: str) -> VersionManifest:
    try:
        return VersionManifest.model_validate_json(store.get(key))
    except ValidationError:
        return VersionManifest(files={})  # unreadable: its version serves nothing


class DocsReader:
    """The published sites as readers see them: TechDocs' layout, versions from their manifests.

    Thread-safe; a manifest read is kept for a few seconds, as one page view
    asks for a page and then its assets.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._manifests: dict[str, tuple[float, VersionManifest | None]] = {}

    def get(self, key: str) -> bytes:
        """The file a reader asked for by its TechDocs key.

        Raises:
            ObjectNotFound: There is none.
        """
        return self.store.get(self._stored(key))

    def exists(self, key: str) -> bool:
        """Whether there is such a file."""
        return self.store.exists(self._stored(key))

    def _stored(self, key: str) -> str:
        """Where the file under ``key`` is kept: a shared object, or ``key`` itself."""
        service, _, inside = key.removeprefix(SITES_PREFIX).partition("/")
        reserved, _, rest = inside.partition("/")
        label, _, relative = rest.partition("/")
        if not key.startswith(SITES_PREFIX) or reserved != RESERVED or not relative:
            return key
        if relative == MANIFEST:
            return key
        manifest = self._manifest(f"{SITES_PREFIX}{service}/{RESERVED}/{label}/{MANIFEST}")
        if manifest is None or relative not in manifest.files:
            return key  # a version stored as a full copy, or its own metadata
        return objects_prefix(service) + manifest.files[relative]

    def _manifest(self, key: str) -> VersionManifest | None:
        now = time.monotonic()
        with self._lock:
            cached = self._manifests.get(key)
        if cached is not None and now - cached[0] < _MANIFEST_TTL:
            return cached[1]
        try:
            found: VersionManifest | None = _manifest(self.store, key)
        except ObjectNotFound:
            found = None
        with self._lock:
            self._manifests[key] = (now, found)
        return found


def parallel(action: Callable[[str], object], items: Iterable[str]) -> None:
    """Run ``action`` over ``items`` on a few threads; the first failure is raised."""
    todo = list(items)
    if len(todo) <= 1:
        for item in todo:
            action(item)
        return
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="techdocs-sync") as pool:
        for future in [pool.submit(action, item) for item in todo]:
            future.result()
