"""Publish a built site into the artifact store in Backstage TechDocs' layout.

The layout is `tasks.techdocs.layout`'s: the current site as TechDocs reads
it, and the last N versions, each a manifest over files shared by all of
them (`tasks.techdocs.versions`).

Uploads are incremental: a file of the current site is sent only when its
MD5 differs from the stored object's ETag, and stored files the new build no
longer has are deleted; a version sends only the files no kept version has.
``techdocs_metadata.json`` is written after the files it lists, so a reader
that sees new metadata also sees the new pages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.storage import ObjectStore
from tasks.techdocs.build import RESERVED, BuiltSite, DocsSource
from tasks.techdocs.layout import objects_prefix, version_prefix, versions_prefix
from tasks.techdocs.metadata import (
    DOCS_PREFIX,
    METADATA_FILE,
    DocsMetadata,
    PublishInfo,
    metadata_json,
    site_prefix,
)
from tasks.techdocs.versions import (
    MANIFEST,
    VersionEntry,
    parallel,
    prune_versions,
    put_version,
    read_versions,
    write_version_entry,
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


def build_metadata(
    site: BuiltSite, source: DocsSource, service: str, local: Mapping[str, _Digests] | None = None
) -> DocsMetadata:
    """The metadata of ``site``: TechDocs' fields, with every file and the commit."""
    files = sorted({*(local if local is not None else _local_files(site.path)), METADATA_FILE})
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
    local: Mapping[str, _Digests] | None = None,
) -> SyncResult:
    """Make ``prefix`` hold exactly the files of ``site`` plus ``metadata``, sending only changes.

    Args:
        store: The artifact store.
        site: A built site directory.
        prefix: Where it goes; ends with '/'.
        metadata: Written last, as ``techdocs_metadata.json``.
        keep: Stored keys (relative to ``prefix``) that are not part of the
            site and must survive, e.g. the ``versions/``.
        local: The site's files and their digests, when already read.
    """
    local = dict(local if local is not None else _local_files(site))
    local.pop(METADATA_FILE, None)  # a site's own copy would be overwritten anyway
    stored = {
        o.key[len(prefix) :]: o.etag
        for o in store.list(prefix)
        if not keep(o.key[len(prefix) :]) and o.key[len(prefix) :] != METADATA_FILE
    }
    changed = sorted(rel for rel, digests in local.items() if stored.get(rel) != digests.md5)
    removed = sorted(set(stored) - set(local))
    parallel(lambda rel: _put_file(store, prefix + rel, site / rel), changed)
    store.put(prefix + METADATA_FILE, metadata_json(metadata), content_type="application/json")
    parallel(lambda rel: store.delete(prefix + rel), removed)
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
    """The version's upload (its new files, manifest and metadata); None when nothing was built."""
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
    digests: Path | None = None,
) -> PublishedDocs:
    """Upload ``site`` as version ``source.label``, make it current and keep the last versions.

    Args:
        store: The artifact store.
        service: The catalog name, which is also TechDocs' entity name.
        site: The output of a strict build.
        source: The commit it was built from.
        keep_versions: How many versions to keep, newest build first.
        update_live: False keeps the current site as it is (it shows a newer commit).
        digests: Where the site's files' digests are kept between publishes of
            a site directory that is rebuilt in place: a file that was not
            written since is not read again.
    """
    local = _local_files(site.path, digests)
    metadata = build_metadata(site, source, service, local)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="techdocs-publish") as pool:
        # The version and the current site share nothing, and what the version's
        # steps read is read at once: their round-trips overlap.
        live = None
        if update_live:
            prefix = site_prefix(service)
            live = pool.submit(
                sync_site, store, site.path, prefix, metadata, keep=_is_versions, local=local
            )
        objects = pool.submit(store.keys, objects_prefix(service))
        stored = pool.submit(store.keys, versions_prefix(service))
        before = pool.submit(read_versions, store, service)
        copy = _publish_version(
            store, service, site.path, metadata, local, objects.result(), stored.result()
        )
        versions, replaced = write_version_entry(store, service, _entry(metadata), before.result())
        synced = live.result() if live is not None else None
    pruned = prune_versions(
        store, service, keep_versions, versions=versions, collect=replaced, stored=stored.result()
    )
    return PublishedDocs(
        service=service,
        commit=source.sha,
        version=source.label,
        path="/" + site_prefix(service).removeprefix(DOCS_PREFIX),
        live=synced,
        version_copy=copy,
        pruned=pruned,
        note=""
        if update_live
        else "the current site shows a newer commit; only the version was added",
    )


def _entry(metadata: DocsMetadata) -> VersionEntry:
    info = metadata.slipway
    if info is None:
        raise ValueError("only metadata that Slipway wrote names a version")
    return VersionEntry(
        name=info.version,
        commit=info.commit,
        ref=info.ref,
        build_timestamp=metadata.build_timestamp,
        commit_timestamp=info.commit_timestamp,
    )


def _publish_version(
    store: ObjectStore,
    service: str,
    site: Path,
    metadata: DocsMetadata,
    local: Mapping[str, _Digests],
    objects: list[str],
    versions: list[str],
) -> SyncResult:
    """The version's new files and manifest, then its metadata; an older full copy is removed.

    ``objects`` and ``versions`` are the keys stored under the service's
    shared objects and its ``versions/`` before this publish.
    """
    assert metadata.slipway is not None
    prefix = version_prefix(service, metadata.slipway.version)
    files = {rel: d.sha256 for rel, d in local.items() if rel != METADATA_FILE}
    sent, shared = put_version(store, service, prefix, site, files, objects)
    store.put(prefix + METADATA_FILE, metadata_json(metadata), content_type="application/json")
    own = {prefix + MANIFEST, prefix + METADATA_FILE}
    stale = [k for k in versions if k.startswith(prefix) and k not in own]  # from a full copy
    parallel(store.delete, stale)
    return SyncResult(
        prefix=prefix,
        uploaded=(*sent, MANIFEST, METADATA_FILE),
        deleted=tuple(k[len(prefix) :] for k in stale),
        unchanged=shared,
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


@dataclass(frozen=True)
class _Digests:
    md5: str
    """What a store's ETag is, to compare the current site's files."""
    sha256: str
    """A version file's content id."""


def _local_files(site: Path, memo: Path | None = None) -> dict[str, _Digests]:
    """Every file of a built site, relative and '/'-separated, with its digests.

    With ``memo``, a file whose size, inode and times (change time included,
    which no one can set) are those it had when last hashed is not read again.
    """
    known = _read_memo(memo)
    found, stamps = {}, {}
    # mkdocs copies files, never links them: a link in the site is no file of it
    # (one the sandboxed build planted would lead to a file of the platform).
    for path in sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = path.relative_to(site).as_posix()
        seen = path.stat()
        stamp = [seen.st_size, seen.st_ino, seen.st_mtime_ns, seen.st_ctime_ns]
        entry = known.get(relative)
        if isinstance(entry, list) and len(entry) == 6 and entry[:4] == stamp:
            found[relative] = _Digests(str(entry[4]), str(entry[5]))
        else:
            found[relative] = _digests(path)
        stamps[relative] = [*stamp, found[relative].md5, found[relative].sha256]
    if memo is not None:
        partial = memo.with_name(f".{memo.name}.{uuid.uuid4().hex}")
        partial.write_text(json.dumps(stamps), encoding="utf-8")
        partial.replace(memo)
    return found


def _read_memo(memo: Path | None) -> dict[str, object]:
    try:
        known = json.loads(memo.read_text(encoding="utf-8")) if memo is not None else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _digests(path: Path) -> _Digests:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
    return _Digests(md5.hexdigest(), sha256.hexdigest())


def _put_file(store: ObjectStore, key: str, path: Path) -> None:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    store.put(key, path.read_bytes(), content_type=kind)
