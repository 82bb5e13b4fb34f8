"""The facts a scorecard judges, each read from where the platform keeps it.

One function per fact source: the catalog (owner), the artifact store (docs,
scans), Prefect (the last build's tests, the drift report, approvals),
monitoring (alert rules) and the DORA report. `gather_facts` puts them
together for one service; a source that fails makes its fact "no data" with
the reason, so one broken part never hides the rest of a scorecard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from slipway.errors import SlipwayError
from tasks.catalog import CatalogEntry
from tasks.catalog.model import CatalogSnapshot, owner_group
from tasks.insights.docs_freshness import freshness, latest_commit
from tasks.insights.dora import PRODUCTION, DoraReport
from tasks.insights.records import LatestArtifact, approval_of
from tasks.insights.scorecards import DORA_METRICS, Fact
from tasks.monitoring.view import MonitoringView
from tasks.release import DeploymentRecord
from tasks.scanners.base import Severity
from tasks.scanners.history import baseline_sha, load_summary
from tasks.storage import ObjectStore
from tasks.techdocs import read_metadata

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from blocks.git_server import GitServer

__all__ = ["DRIFT_REPORT", "FactSources", "gather_facts", "tests_key"]

logger = logging.getLogger(__name__)

DRIFT_REPORT = "drift-report"
"""The table artifact the nightly drift check leaves, one row per environment."""
APPROVAL_WINDOW = timedelta(days=90)
_SEVERE = {Severity.HIGH, Severity.CRITICAL}
_DRIFT_RANK = {"InSync": 0, "Unknown": 1, "OutOfSync": 2}


def tests_key(service: str) -> str:
    """The table artifact of a service's latest test run."""
    return f"tests-{service}"


@dataclass(frozen=True)
class FactSources:
    """Everything the facts of any service are read from."""

    snapshot: CatalogSnapshot
    store: ObjectStore
    server: GitServer
    client: SyncPrefectClient
    monitoring: MonitoringView
    latest: dict[str, LatestArtifact]
    """The newest drift report and every service's tests artifact, read once."""
    stale_after: timedelta


def owner_fact(entry: CatalogEntry, snapshot: CatalogSnapshot) -> Fact:
    """How many members the owning group has; 0 when the catalog has no such group."""
    name = owner_group(entry.owner)
    if name is None:
        return Fact(value=0, detail=f"{entry.owner} is not a group of this catalog")
    group = snapshot.group(name)
    if group is None:
        return Fact(value=0, detail=f"group:{name} is not in the catalog")
    return Fact(value=len(group.members), detail=f"group:{name}: {', '.join(group.members)}")


def docs_fact(sources: FactSources, service: str) -> Fact:
    """The docs' freshness against the repository's latest commit."""
    docs = read_metadata(sources.store, service)
    state, note = freshness(
        docs, latest_commit(sources.server, service), stale_after=sources.stale_after
    )
    return Fact(value=state, detail=note)


def tests_fact(records: Sequence[DeploymentRecord], artifact: LatestArtifact | None) -> Fact:
    """How many tests the last build ran: its tests artifact, if the newest build left one."""
    builds = [r for r in records if r.action == "build-test-deploy"]
    if artifact is None:
        return Fact.missing("no build has left a test report yet")
    last = max(builds, key=lambda r: r.at) if builds else None
    other_run = last is not None and str(artifact.flow_run_id or "") != last.flow_run_id
    if last is not None and other_run and _time(artifact.updated) < last.at:
        return Fact(value=0, detail=f"the last build ({last.sha[:12]}) left no test report")
    rows = artifact.data if isinstance(artifact.data, list) else []
    ran = [
        r for r in rows if isinstance(r, dict) and r.get("result") in {"passed", "failed", "error"}
    ]
    return Fact(value=len(ran), detail=artifact.description or "")


def findings_fact(store: ObjectStore, service: str, today: datetime) -> Fact:
    """Open HIGH and CRITICAL findings of the default branch's latest scan."""
    newest = baseline_sha(store, service, "")  # the newest default-branch scan, of any commit
    summary = load_summary(store, service, newest) if newest else None
    if summary is None:
        return Fact.missing("the default branch was never scanned")
    open_ = summary.open_findings(today.date())
    severe = [f for f in open_ if f.severity in _SEVERE]
    return Fact(value=len(severe), detail=f"scan of {summary.sha[:12]}: {len(open_)} open in all")


def drift_fact(report: LatestArtifact | None, service: str) -> Fact:
    """The worst status the last drift check gave any of the service's environments."""
    rows = report.data if report is not None and isinstance(report.data, list) else []
    mine = [r for r in rows if isinstance(r, dict) and r.get("service") == service]
    if not mine:
        return Fact.missing("no drift check has covered it yet")
    worst = max(mine, key=lambda r: _DRIFT_RANK.get(str(r.get("status")), 1))
    detail = "; ".join(f"{r.get('environment')}: {r.get('status')}" for r in mine)
    return Fact(value=str(worst.get("status")), detail=detail)


def approvals_fact(
    client: SyncPrefectClient, records: Sequence[DeploymentRecord], now: datetime
) -> Fact:
    """Changes in prod over the last 90 days whose flow run holds no approval."""
    changes = [
        r
        for r in records
        if r.environment == PRODUCTION
        and r.action != "rollback"
        and r.outcome == "succeeded"
        and r.at >= now - APPROVAL_WINDOW
    ]
    unapproved = [r for r in changes if not _approved(client, r)]
    if not changes:
        return Fact(value=0, detail="no change reached prod in 90 days")
    shas = ", ".join(r.sha[:12] for r in unapproved)
    return Fact(
        value=len(unapproved), detail=f"{len(changes)} changes; unapproved: {shas or 'none'}"
    )


def _approved(client: SyncPrefectClient, record: DeploymentRecord) -> bool:
    answer = approval_of(client, record.flow_run_id) if record.flow_run_id else None
    return bool(answer and answer.get("approve") is True)


def alert_fact(monitoring: MonitoringView, service: str) -> Fact:
    """How many alert rules watch the service, or "not configured"."""
    count = monitoring.rule_count(service)
    if count is None:
        return Fact.unconfigured(monitoring.status)
    return Fact(value=count, detail=monitoring.status)


def dora_facts(report: DoraReport | None) -> dict[str, Fact]:
    """Every ``dora_<metric>_<N>d`` fact of the report; "no data" where it has no value."""
    facts: dict[str, Fact] = {}
    for metrics in report.windows if report else ():
        values: dict[str, Any] = {
            "lead_time_hours": metrics.lead_time_hours,
            "change_failure_rate": metrics.change_failure_rate,
            "deployments_per_week": metrics.deployments_per_week,
            "recovery_hours": metrics.recovery_hours,
            "rework_rate": metrics.rework_rate,
        }
        for name in DORA_METRICS:
            key = f"dora_{name}_{metrics.window_days}d"
            value = values[name]
            facts[key] = (
                Fact(
                    value=value,
                    detail=f"{metrics.deployments} of {metrics.attempts} changes deployed",
                )
                if value is not None
                else Fact.missing(f"no deployment to prod in {metrics.window_days} days")
            )
    return facts


def gather_facts(
    sources: FactSources,
    entry: CatalogEntry,
    records: Sequence[DeploymentRecord],
    report: DoraReport | None,
    *,
    now: datetime,
) -> dict[str, Fact]:
    """Every fact of one service; a source that fails gives "no data" and its reason."""
    readers: dict[str, Callable[[], Fact]] = {
        "owner_group_members": lambda: owner_fact(entry, sources.snapshot),
        "docs_freshness": lambda: docs_fact(sources, entry.name),
        "tests_on_last_build": lambda: tests_fact(
            records, sources.latest.get(tests_key(entry.name))
        ),
        "open_high_critical_findings": lambda: findings_fact(sources.store, entry.name, now),
        "drift_status": lambda: drift_fact(sources.latest.get(DRIFT_REPORT), entry.name),
        "unapproved_prod_changes": lambda: approvals_fact(sources.client, records, now),
        "alert_rules": lambda: alert_fact(sources.monitoring, entry.name),
    }
    facts = dora_facts(report)
    for name, read in readers.items():
        try:
            facts[name] = read()
        except SlipwayError as e:
            logger.warning("The fact %s of %s could not be read: %s", name, entry.name, e)
            facts[name] = Fact.missing(f"could not be read: {e}")
    return facts


def _time(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
