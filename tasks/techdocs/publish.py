"""Publish a built site into the artifact store in Backstage TechDocs' layout.

Layout, under the store's ``techdocs/`` prefix (a Backstage instance with
``techdocs.builder: external`` and the bucket's root path set to
``techdocs`` reads it as it is)::

    default/component/<service>/                  the current site
    default/component/<service>/techdocs_metadata.json
    default/component/<service>/versions/<label>/ a copy per version, the last N kept
    default/component/<service>/versions/index.json

Uploads are incremental: a file is sent only when its MD5 differs from the
stored object's ETag, and stored files the new build no longer has are
deleted. ``techdocs_metadata.json`` is written after the files it lists, so a
reader that sees new metadata also sees the new pages.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, ValidationError

from slipway.errors import ObjectNotFound
from tasks.storage import ObjectStore
from tasks.techdocs.build import RESERVED, BuiltSite, DocsSource
from tasks.techdocs.metadata import (
    DOCS_PREFIX,
    METADATA_FILE,
    DocsMetadata,
    PublishInfo,
    metadata_json,
    site_prefix,
)

__all__ = [
    "PublishedDocs",
    "SyncResult",
    "VersionEntry",
    "already_published",
    "build_metadata",
    "prune_versions",
    "publish_site",
    "read_versions",
    "sync_site",
    "write_version_entry",
]

logger = logging.getLogger(__name__)

_VERSIONS_INDEX = f"{RESERVED}/index.json"
_WORKERS = 8  # parallel uploads; S3 round-trips dominate, not CPU


class VersionEntry(BaseModel):
    """One kept copy under ``versions/``."""

    model_config = ConfigDict(frozen=True)

    name: str
    commit: str
    ref: str
    build_timestamp: int
    commit_timestamp: int


class _VersionsIndex(BaseModel):
    versions: tuple[VersionEntry, ...] = ()


@dataclass(frozen=True)
class SyncResult:
    """What one incremental upload of a site did."""

    prefix: str
    """Where the site went, e.g. ``techdocs/default/component/api/``."""
    uploaded: tuple[str, ...]
    """Keys relative to ``prefix`` that were sent, metadata last."""
    deleted: tuple[str, ...]
    """Keys relative to ``prefix`` that the new build no longer has."""
    unchanged: int
    """How many files were already stored with the same content."""


def build_metadata(site: BuiltSite, source: DocsSource, service: str) -> DocsMetadata:
    """The metadata of ``site``: TechDocs' fields, with every file and the commit."""
    files = sorted({*_local_files(site.path), METADATA_FILE})
    return DocsMetadata(
        site_name=site.config.site_name,
        site_description=site.config.site_description,
        build_timestamp=int(datetime.now(UTC).timestamp() * 1000),
        files=tuple(files),
        etag=source.sha,
        slipway=PublishInfo(
            service=service,
            commit=source.sha,
            ref=source.ref,
            version=source.label,
            commit_timestamp=int(source.committed_at.timestamp() * 1000),
            build_key=source.build_key,
        ),
    )


def sync_site(
    store: ObjectStore,
    site: Path,
    prefix: str,
    metadata: DocsMetadata,
    *,
    keep: Callable[[str], bool] = lambda _: False,
) -> SyncResult:
    """Make ``prefix`` hold exactly the files of ``site`` plus ``metadata``, sending only changes.

    Args:
        store: The artifact store.
        site: A built site directory.
        prefix: Where it goes; ends with '/'.
        metadata: Written last, as ``techdocs_metadata.json``.
        keep: Stored keys (relative to ``prefix``) that are not part of the
            site and must survive, e.g. the ``versions/`` copies.
    """
    local = _local_files(site)
    local.pop(METADATA_FILE, None)  # a site's own copy would be overwritten anyway
    stored = {
        o.key[len(prefix) :]: o.etag
        for o in store.list(prefix)
        if not keep(o.key[len(prefix) :]) and o.key[len(prefix) :] != METADATA_FILE
    }
    changed = sorted(rel for rel, md5 in local.items() if stored.get(rel) != md5)
    removed = sorted(set(stored) - set(local))
    _parallel(lambda rel: _put_file(store, prefix + rel, site / rel), changed)
    store.put(prefix + METADATA_FILE, metadata_json(metadata), content_type="application/json")
    _parallel(lambda rel: store.delete(prefix + rel), removed)
    logger.info(
        "%s: %d sent, %d removed, %d unchanged",
        prefix,
        len(changed),
        len(removed),
        len(local) - len(changed),
    )
    return SyncResult(
        prefix=prefix,
        uploaded=(*changed, METADATA_FILE),
        deleted=tuple(removed),
        unchanged=len(local) - len(changed),
    )


@dataclass(frozen=True)
class PublishedDocs:
    """What a publish left in the store."""

    service: str
    commit: str
    """The sha the site was built from."""
    version: str
    """Its name under ``versions/``."""
    path: str
    """The site's path on the docs portal, e.g. ``/default/component/api/``."""
    live: SyncResult | None
    """The current site's upload; None when a newer commit's site stays current."""
    version_copy: SyncResult | None
    """The version copy's upload; None when nothing was built."""
    pruned: tuple[str, ...] = ()
    """Versions removed to keep the last N."""
    note: str = ""
    """Why less than a full publish happened, if it did."""


@task(name="upload-docs", cache_policy=NO_CACHE)
def publish_site(
    store: ObjectStore,
    service: str,
    site: BuiltSite,
    source: DocsSource,
    *,
    keep_versions: int,
    update_live: bool = True,
) -> PublishedDocs:
    """Upload ``site`` as version ``source.label``, make it current and keep the last versions.

    Args:
        store: The artifact store.
        service: The catalog name, which is also TechDocs' entity name.
        site: The output of a strict build.
        source: The commit it was built from.
        keep_versions: How many version copies to keep, newest build first.
        update_live: False keeps the current site as it is (it shows a newer commit).
    """
    metadata = build_metadata(site, source, service)
    base = site_prefix(service)
    copy = sync_site(store, site.path, f"{base}{RESERVED}/{source.label}/", metadata)
    write_version_entry(store, service, metadata)
    live = None
    if update_live:
        live = sync_site(store, site.path, base, metadata, keep=_is_versions)
    pruned = prune_versions(store, service, keep_versions)
    return PublishedDocs(
        service=service,
        commit=source.sha,
        version=source.label,
        path="/" + base.removeprefix(DOCS_PREFIX),
        live=live,
        version_copy=copy,
        pruned=pruned,
        note=""
        if update_live
        else "the current site shows a newer commit; only the version was added",
    )


def _is_versions(relative: str) -> bool:
    return relative.split("/", 1)[0] == RESERVED


def already_published(
    store: ObjectStore, service: str, live: DocsMetadata | None, source: DocsSource
) -> bool:
    """Whether ``live`` was built from the tree of ``source`` with these packages, and its version is kept.

    Then a build would produce the same files, so there is nothing to send.
    """
    if live is None or live.slipway is None or live.slipway.build_key != source.build_key:
        return False
    return any(v.name == source.label for v in read_versions(store, service))


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


def write_version_entry(store: ObjectStore, service: str, metadata: DocsMetadata) -> None:
    """Record (or refresh) the version that ``metadata`` describes in the versions index."""
    info = metadata.slipway
    if info is None:
        raise ValueError("only metadata that Slipway wrote names a version")
    entry = VersionEntry(
        name=info.version,
        commit=info.commit,
        ref=info.ref,
        build_timestamp=metadata.build_timestamp,
        commit_timestamp=info.commit_timestamp,
    )
    others = [v for v in read_versions(store, service) if v.name != entry.name]
    _write_versions(store, service, [entry, *others])


def prune_versions(store: ObjectStore, service: str, keep: int) -> tuple[str, ...]:
    """Delete every version but the ``keep`` newest builds, and any copy the index forgot."""
    versions = sorted(read_versions(store, service), key=lambda v: -v.build_timestamp)
    kept, dropped = versions[:keep], [v.name for v in versions[keep:]]
    base = f"{site_prefix(service)}{RESERVED}/"
    names = {v.name for v in kept}
    doomed = [
        o.key
        for o in store.list(base)
        if o.key != base + "index.json" and o.key[len(base) :].split("/", 1)[0] not in names
    ]
    _write_versions(store, service, kept)
    _parallel(store.delete, doomed)
    if dropped:
        logger.info("%s: removed old versions %s", service, ", ".join(dropped))
    return tuple(dropped)


def _write_versions(store: ObjectStore, service: str, versions: Iterable[VersionEntry]) -> None:
    ordered = tuple(sorted(versions, key=lambda v: -v.build_timestamp))
    body = _VersionsIndex(versions=ordered).model_dump_json(indent=2).encode()
    store.put(site_prefix(service) + _VERSIONS_INDEX, body, content_type="application/json")


def _local_files(site: Path) -> dict[str, str]:
    """Every file of a built site, relative and '/'-separated, with its MD5."""
    found = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False))
        found[path.relative_to(site).as_posix()] = digest.hexdigest()
    return found


def _put_file(store: ObjectStore, key: str, path: Path) -> None:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    store.put(key, path.read_bytes(), content_type=kind)


def _parallel(action: Callable[[str], object], items: list[str]) -> None:
    """Run ``action`` over ``items`` on a few threads; the first failure is raised."""
    if len(items) <= 1:
        for item in items:
            action(item)
        return
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="techdocs-sync") as pool:
        for future in [pool.submit(action, item) for item in items]:
            future.result()
