"""What newly synced advisories touch, recorded where a rescan would have put it.

`match_advisories` runs after ``sync-vulnerability-db`` installed new OSV
data: it matches the new and changed advisories against the stored SBOM of
every service version that matters (`tasks.scanners.impact`), adds each new
finding to that version's stored scan (summary and SARIF, so the security
gate and the portal see it), and emits ``slipway.security.finding`` for
each, labelled with the service and severity for notifications to route.

`affected_by` answers the same question for one advisory on demand, which
is what ``slipway vuln affected`` prints.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks import ArtifactStore
from tasks.catalog import Catalog
from tasks.insights.records import latest_everywhere
from tasks.osv_mirror import Record
from tasks.scanners.accepted import AcceptedRisks
from tasks.scanners.alerts import emit_finding
from tasks.scanners.base import ScanStatus
from tasks.scanners.history import load_summary, save_scan
from tasks.scanners.impact import Impact, ServiceVersion, current_sboms, match
from tasks.scanners.report import FindingRecord, ScanSummary, ordered
from tasks.scanners.sarif import to_sarif, validate_sarif
from tasks.storage import ObjectStore, open_store

__all__ = [
    "ImpactReport",
    "affected_by",
    "deployed_versions",
    "impact_rows",
    "match_advisories",
    "record_impacts",
]

_WRITERS = 16  # stored scans updated at once: round-trips dominate, not CPU


@dataclass(frozen=True)
class ImpactReport:
    """What one match of advisories against the stored SBOMs found and recorded."""

    advisories: int
    """Advisories matched."""
    sboms: int
    """SBOMs they were matched against."""
    unscanned: tuple[ServiceVersion, ...]
    """Versions that have no readable SBOM, so no answer: scan them."""
    impacts: tuple[Impact, ...]
    """Every match, whether the stored scan already had it or not."""
    added: tuple[FindingRecord, ...]
    """The findings added to stored scans, in the order of `added_to`."""
    added_to: tuple[ServiceVersion, ...]
    """The version each added finding was added to."""
    seconds: float
    """Wall time of the reading and matching, not of recording."""
    unindexed: tuple[str, ...] = ()
    """Services the SBOM index lacked, so read from their SBOMs (and added to it)."""


def affected_by(
    store: ObjectStore,
    records: Sequence[Record],
    services: Iterable[str],
    deployed: Mapping[tuple[str, str], str],
) -> ImpactReport:
    """Match ``records`` against the SBOMs of ``services``' current versions; changes no scan.

    The SBOMs come from the SBOM index where it has them (`current_sboms`),
    which this fills in for services it lacks.
    """
    started = time.monotonic()
    sboms, missing, unindexed = current_sboms(store, services, deployed)
    impacts = match(records, sboms)
    return ImpactReport(
        advisories=len(records),
        sboms=len(sboms),
        unscanned=tuple(missing),
        impacts=tuple(impacts),
        added=(),
        added_to=(),
        seconds=time.monotonic() - started,
        unindexed=tuple(unindexed),
    )


def record_impacts(
    store: ObjectStore,
    impacts: Iterable[Impact],
    *,
    repositories: Mapping[str, str],
    today: date,
) -> list[tuple[ServiceVersion, FindingRecord]]:
    """Add each impact the stored scan lacks to it, as a new finding; returns what was added.

    A scan already has an impact when one of its findings names the
    advisory or an alias (pip-audit found it, or an earlier match added it).
    The commit's accepted risks, kept in the summary, apply to what is added.
    """
    grouped: dict[ServiceVersion, list[Impact]] = defaultdict(list)
    for impact in impacts:
        grouped[impact.version].append(impact)

    def add(version: ServiceVersion) -> list[tuple[ServiceVersion, FindingRecord]]:
        summary = load_summary(store, version.service, version.sha)
        if summary is None:
            return []
        known = frozenset().union(*(f.ids for f in summary.findings))
        accepted = AcceptedRisks(accepted_risks=summary.accepted_risks)
        added = [
            FindingRecord.of(i.finding(), "new", accepted.acceptance(i.finding(), today))
            for i in grouped[version]
            if not i.ids & known
        ]
        if added:
            updated = _with_findings(summary, added)
            sarif = to_sarif(updated, repository=repositories.get(version.service))
            validate_sarif(sarif)
            save_scan(store, updated, sarif=sarif, sbom=None)
        return [(version, record) for record in added]

    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="impact") as pool:
        return [pair for pairs in pool.map(add, list(grouped)) for pair in pairs]


def _with_findings(summary: ScanSummary, added: list[FindingRecord]) -> ScanSummary:
    tools = tuple(
        t.model_copy(
            update={
                "findings": t.findings + len(added),
                "status": ScanStatus.FINDINGS if t.status is ScanStatus.CLEAN else t.status,
            }
        )
        if t.tool == "pip-audit"
        else t
        for t in summary.tools
    )
    names = dict.fromkeys((*summary.matched_advisories, *(f.rule_id for f in added)))
    return summary.model_copy(
        update={
            "findings": ordered((*summary.findings, *added)),
            "tools": tools,
            "matched_advisories": tuple(names),
        }
    )


def deployed_versions() -> dict[tuple[str, str], str]:
    """``(service, environment) -> sha`` of each environment's last successful deployment."""
    with get_client(sync_client=True) as client:
        latest = latest_everywhere(client)
    return {key: r.sha for key, r in latest.items() if r.outcome == "succeeded"}


@task(name="match-advisories", cache_policy=NO_CACHE)
def match_advisories(records: list[Record]) -> ImpactReport:
    """Match ``records`` against every service's stored SBOMs and record what they touch."""
    logger = get_run_logger()
    store = open_store(ArtifactStore.load_default())
    entries = Catalog.load_default().entries()
    report = affected_by(store, records, [e.name for e in entries], deployed_versions())
    today = datetime.now(UTC).date()
    repositories: dict[str, str] = {e.name: e.repository for e in entries}
    added = record_impacts(store, report.impacts, repositories=repositories, today=today)
    for version, finding in added:
        if not finding.accepted_on(today):
            emit_finding(
                version.service,
                version.sha,
                finding,
                source="advisory-sync",
                where=list(version.where),
            )
    logger.info(
        "%d advisories matched against %d SBOMs in %.2f s: %d findings, %d new",
        report.advisories,
        report.sboms,
        report.seconds,
        len(report.impacts),
        len(added),
    )
    if report.unindexed:
        logger.warning(
            "the SBOM index lacked %d services (a store written before it), so their history "
            "and SBOM were read one by one; they are in the index now",
            len(report.unindexed),
        )
    for version in report.unscanned:
        logger.warning(
            "%s at %s has no stored SBOM, so no advisory could be matched: scan it",
            version.service,
            version.sha[:12],
        )
    final = replace(report, added=tuple(f for _, f in added), added_to=tuple(v for v, _ in added))
    create_table_artifact(
        table=impact_rows(final) or [{"service": "", "advisory": "no service is affected"}],
        key="advisory-impact",
        description="What the last sync's new and changed advisories touch, from stored SBOMs.",
    )
    return final


def impact_rows(report: ImpactReport) -> list[dict[str, str]]:
    """One row per impact, worst first, then the versions that could not be checked."""
    new = {(v, f.rule_id) for v, f in zip(report.added_to, report.added, strict=True)}
    rows = [
        {
            "service": i.service,
            "commit": i.sha[:12],
            "where": ", ".join(i.version.where),
            "advisory": i.advisory,
            "severity": i.severity.value,
            "package": f"{i.package} {i.installed}",
            "fix version": i.fix_version or "",
            "finding": "new" if (i.version, i.advisory) in new else "already known",
        }
        for i in sorted(report.impacts, key=lambda i: (-i.severity.rank, i.service, i.advisory))
    ]
    rows += [
        {
            "service": v.service,
            "commit": v.sha[:12],
            "where": ", ".join(v.where),
            "advisory": "",
            "severity": "",
            "package": "",
            "fix version": "",
            "finding": "not checked: no stored SBOM",
        }
        for v in report.unscanned
    ]
    return rows
