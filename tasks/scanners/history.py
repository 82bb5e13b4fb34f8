"""Scans in the artifact store: ``<service>/<sha>/`` per commit, and the default branch's history.

Layout, for a service ``payments`` scanned at commit ``3f2a...``:

- ``payments/3f2a.../scan.sarif``: the merged SARIF 2.1.0 log;
- ``payments/3f2a.../sbom.cdx.json``: the CycloneDX SBOM (absent when it errored);
- ``payments/3f2a.../summary.json``: the `ScanSummary` the gate reads;
- ``payments/security/default-branch.json``: the default branch's scanned commits,
  newest first, from which the next scan takes its baseline;
- ``_slipway/sbom-index/v1/<x>.json``: the newest one's SBOM components, with
  other services' (`tasks.scanners.sbom_index`), for advisory impact.

The baseline of a commit is the newest default-branch scan of *another* commit,
so re-scanning a commit cannot turn its new findings into unchanged ones.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from slipway.errors import ObjectNotFound, StorageError
from tasks.scanners.report import ScanSummary
from tasks.scanners.sbom_index import index_sbom, refresh_sbom
from tasks.storage import ObjectStore

__all__ = [
    "HISTORY_LENGTH",
    "DefaultBranchScan",
    "baseline_sha",
    "default_branch_scans",
    "last_default_branch_scan",
    "load_sbom",
    "load_summary",
    "save_scan",
    "scan_prefix",
]

logger = logging.getLogger(__name__)

HISTORY_LENGTH = 50
"""How many default-branch scans the history keeps."""


class DefaultBranchScan(BaseModel):
    """One scan of the default branch's tip."""

    sha: str
    scanned_at: datetime


class _History(BaseModel):
    scans: list[DefaultBranchScan] = []


def scan_prefix(service: str, sha: str) -> str:
    """``<service>/<sha>``: where one commit's scan is kept."""
    return f"{service}/{sha}"


def _history_key(service: str) -> str:
    return f"{service}/security/default-branch.json"


def save_scan(
    store: ObjectStore,
    summary: ScanSummary,
    *,
    sarif: dict[str, Any],
    sbom: bytes | None,
    on_default_branch: bool = False,
) -> str:
    """Store the SARIF, the SBOM and the summary; returns their common prefix.

    The summary goes last: whoever finds it can rely on the other two being there.
    A scan ``on_default_branch`` (its tip) then joins the service's history,
    and its SBOM becomes the service's entry in the SBOM index
    (`_record_default_branch_scan`). Any other new SBOM of the commit the
    index holds for the service replaces it there.
    """
    prefix = scan_prefix(summary.service, summary.sha)
    store.put(
        f"{prefix}/scan.sarif",
        json.dumps(sarif, indent=2).encode(),
        content_type="application/sarif+json",
    )
    if sbom is not None:
        store.put(f"{prefix}/sbom.cdx.json", sbom, content_type="application/vnd.cyclonedx+json")
    store.put(
        f"{prefix}/summary.json",
        summary.model_dump_json(indent=2).encode(),
        content_type="application/json",
    )
    if on_default_branch:  # sets the index entry, so no refresh of it is needed as well
        _record_default_branch_scan(store, summary, sbom)
    elif sbom is not None:  # a rescan of the indexed commit may list other components
        refresh_sbom(store, summary.service, summary.sha, sbom)
    return prefix


def load_summary(store: ObjectStore, service: str, sha: str) -> ScanSummary | None:
    """The summary of the scan of ``service`` at ``sha``, or ``None`` when it was never scanned.

    Raises:
        StorageError: The summary exists but cannot be read.
    """
    try:
        raw = store.get(f"{scan_prefix(service, sha)}/summary.json")
    except ObjectNotFound:
        return None
    try:
        return ScanSummary.model_validate_json(raw)
    except ValidationError as e:
        raise StorageError(
            f"the scan summary of {service} at {sha[:12]} is not readable: {e}",
            hint="scan the commit again: security_scan(service, commit=sha)",
        ) from e


def load_sbom(store: ObjectStore, service: str, sha: str) -> bytes | None:
    """The stored CycloneDX SBOM of ``service`` at ``sha``; None when it has none."""
    try:
        return store.get(f"{scan_prefix(service, sha)}/sbom.cdx.json")
    except ObjectNotFound:
        return None


def last_default_branch_scan(store: ObjectStore, service: str) -> ScanSummary | None:
    """The newest stored scan of the default branch, whatever its commit; None when there is none."""
    for scan in _read_history(store, service).scans:
        try:
            summary = load_summary(store, service, scan.sha)
        except StorageError as e:  # costs a full scan, nothing else
            logger.warning("ignoring the last scan of %s: %s", service, e)
            return None
        if summary is not None:
            return summary
    return None


def _record_default_branch_scan(
    store: ObjectStore, summary: ScanSummary, sbom: bytes | None
) -> None:
    """Add a scan of the default branch's tip, whose SBOM is ``sbom``, to the service's history.

    Two scans of one service finishing at the same moment may both read the
    history before either writes it; the later write then drops the other's
    entry, and the next scan's baseline is one commit older. That is the
    worst case, so no lock is taken.

    The newest scan's SBOM goes into the SBOM index first
    (`tasks.scanners.sbom_index`), so advisory impact never sees a history
    that its index entry lags behind.

    Raises:
        StorageError: The history or the index entry could not be written.
    """
    history = _read_history(store, summary.service)
    scans = [s for s in history.scans if s.sha != summary.sha]
    scans.insert(0, DefaultBranchScan(sha=summary.sha, scanned_at=summary.scanned_at))
    scans.sort(key=lambda s: s.scanned_at, reverse=True)
    newest = scans[0].sha
    if newest != summary.sha or sbom is None:  # another scan is newer, or this one kept its SBOM
        sbom = load_sbom(store, summary.service, newest)
    index_sbom(store, summary.service, newest, sbom)
    data = _History(scans=scans[:HISTORY_LENGTH]).model_dump_json(indent=2).encode()
    store.put(_history_key(summary.service), data, content_type="application/json")


def baseline_sha(store: ObjectStore, service: str, sha: str) -> str | None:
    """The newest default-branch scan of a commit other than ``sha``, if any."""
    for scan in _read_history(store, service).scans:
        if scan.sha != sha and store.exists(f"{scan_prefix(service, scan.sha)}/summary.json"):
            return scan.sha
    return None


def default_branch_scans(store: ObjectStore, service: str) -> list[DefaultBranchScan]:
    """The default branch's scanned commits, newest first; none when never scanned."""
    return _read_history(store, service).scans


def _read_history(store: ObjectStore, service: str) -> _History:
    try:
        return _History.model_validate_json(store.get(_history_key(service)))
    except ObjectNotFound:
        return _History()
    except ValidationError as e:
        # A damaged history only costs the baseline; every scan is still stored.
        logger.warning("ignoring unreadable scan history of %s: %s", service, e)
        return _History()
