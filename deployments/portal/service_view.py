"""A service's page, read from everywhere at once: what runs where, what changed, what is wrong.

`service_view` gathers, in parallel, the newest release record of each
environment and the newest of all, the default branch's latest scan, the
last drift report, the stored DORA report and scorecard, the docs and the
alerts. Each read is one or a few requests whatever the history's length,
so a service with a thousand releases renders as fast as one with ten.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
from prefect.exceptions import PrefectException

from deployments.portal.health import HealthBoard, Probe
from deployments.portal.sources import PortalSources
from slipway.errors import ServiceNotFound, SlipwayError
from slipway.names import is_preview
from tasks.catalog import CatalogEntry
from tasks.catalog.model import owner_group
from tasks.insights.docs_freshness import Freshness, freshness, latest_commit
from tasks.insights.dora import DoraReport
from tasks.insights.facts import DRIFT_REPORT
from tasks.insights.records import LatestArtifact, latest_artifacts, latest_records, recent_records
from tasks.insights.scorecards import Scorecard
from tasks.insights.store import load_dora, load_scorecard
from tasks.monitoring.view import FiringAlert
from tasks.release import DeploymentRecord, history_key
from tasks.scanners.base import Severity
from tasks.scanners.history import baseline_sha, load_summary
from tasks.scanners.report import FindingRecord, ScanSummary
from tasks.techdocs import read_metadata, site_prefix
from tasks.techdocs.metadata import DOCS_PREFIX

__all__ = [
    "HISTORY_PAGE",
    "EnvironmentRow",
    "FindingsView",
    "HistoryRow",
    "ServiceView",
    "history_rows",
    "service_view",
]

HISTORY_PAGE = 100
"""Deployments a page shows; older ones are a page further."""

_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="portal")
_SEVERITIES = sorted(Severity, key=lambda s: s.rank, reverse=True)


@dataclass(frozen=True)
class HistoryRow:
    """One release attempt, with the link to the run that made it."""

    record: DeploymentRecord
    run_link: str | None


@dataclass(frozen=True)
class EnvironmentRow:
    """One environment: where it is, what runs there, whether it answers."""

    name: str
    preview: bool
    declared: bool
    """Listed in the entry (a preview is only provisioned)."""
    provisioned: bool
    expires_at: str
    url: str | None
    health: Probe
    running: DeploymentRecord | None
    """The newest successful release: what runs there."""
    last: DeploymentRecord | None
    """The newest release attempt, whatever its outcome."""
    history_link: str


@dataclass(frozen=True)
class FindingsView:
    """The default branch's latest scan: open findings worst first, and where its SARIF is."""

    summary: ScanSummary
    sarif_href: str
    counts: dict[str, int]
    groups: list[tuple[str, list[FindingRecord]]]


@dataclass(frozen=True)
class DocsInfo:
    """The service's published docs and how fresh they are."""

    href: str | None
    freshness: Freshness
    note: str


@dataclass(frozen=True)
class ServiceView:
    """Everything the service page shows."""

    entry: CatalogEntry
    team: str | None
    team_known: bool
    environments: list[EnvironmentRow]
    history: list[HistoryRow]
    more_history: bool
    findings: FindingsView | None
    drift: list[dict[str, Any]]
    drift_checked: Any
    dora: DoraReport | None
    scorecard: Scorecard | None
    alerts: list[FiringAlert] | None
    monitoring: str
    docs: DocsInfo
    add_environment: str | None
    """The UI form that adds an environment, when that deployment exists."""
    problems: list[str]
    """Parts that could not be read, shown as a banner; the rest of the page still shows."""


def history_rows(
    sources: PortalSources, service: str, *, page: int = 0, size: int = HISTORY_PAGE
) -> list[HistoryRow]:
    """One page of the service's release attempts across environments, newest first."""
    records = recent_records(sources.client, service, limit=size, offset=page * size)
    return [HistoryRow(r, sources.run_link(r.flow_run_id)) for r in records]


def _findings(sources: PortalSources, service: str) -> FindingsView | None:
    newest = baseline_sha(sources.store, service, "")  # the newest default-branch scan
    summary = load_summary(sources.store, service, newest) if newest else None
    if summary is None:
        return None
    found = summary.open_findings(date.today())
    groups = [(s.value, [f for f in found if f.severity == s]) for s in _SEVERITIES]
    return FindingsView(
        summary=summary,
        sarif_href=f"/services/{service}/scans/{summary.sha}/scan.sarif",
        counts=summary.counts_by_severity(date.today()),
        groups=[(name, items) for name, items in groups if items],
    )


def _docs(sources: PortalSources, service: str) -> DocsInfo:
    metadata = read_metadata(sources.store, service)
    state, note = freshness(
        metadata, latest_commit(sources.catalog.server, service), stale_after=sources.stale_after
    )
    href = "/" + site_prefix(service).removeprefix(DOCS_PREFIX) if metadata else None
    return DocsInfo(href, state, note)


def _environments(
    sources: PortalSources,
    entry: CatalogEntry,
    latest: dict[str, DeploymentRecord],
    recent: list[HistoryRow],
    health: HealthBoard,
) -> list[EnvironmentRow]:
    names = list(entry.environment_names)
    names += sorted(set(latest) - set(names))  # deployed but since removed from the entry
    rows = []
    for name in names:
        record = entry.outputs.get(name)
        running = next(
            (
                h.record
                for h in recent
                if h.record.environment == name and h.record.outcome == "succeeded"
            ),
            latest[name] if name in latest and latest[name].outcome == "succeeded" else None,
        )
        live = record is not None or name in latest
        rows.append(
            EnvironmentRow(
                name=name,
                preview=is_preview(name),
                declared=name in entry.environments,
                provisioned=record is not None,
                expires_at=record.expires_at.isoformat() if record and record.expires_at else "",
                url=sources.service_url(entry, name) if live else None,
                health=health.get(entry.name, name),
                running=running,
                last=latest.get(name),
                history_link=sources.artifact_link(history_key(entry.name, name)),
            )
        )
    return rows


def service_view(sources: PortalSources, name: str, health: HealthBoard) -> ServiceView:
    """Read everything about one service; raises ServiceNotFound for a name not in the catalog."""
    snapshot = sources.catalog.snapshot()
    entry = next((c for c in snapshot.components if c.name == name), None)
    if entry is None:
        raise ServiceNotFound(f"no service {name!r} in the catalog")
    jobs: dict[str, Future[Any]] = {
        "latest": _POOL.submit(latest_records, sources.client, name),
        "recent": _POOL.submit(history_rows, sources, name, size=HISTORY_PAGE + 1),
        "reports": _POOL.submit(latest_artifacts, sources.client, [DRIFT_REPORT]),
        "findings": _POOL.submit(_findings, sources, name),
        "dora": _POOL.submit(load_dora, sources.store, f"component:{name}"),
        "scorecard": _POOL.submit(load_scorecard, sources.store, name),
        "docs": _POOL.submit(_docs, sources, name),
        "alerts": _POOL.submit(sources.monitoring.firing, name),
        "form": _POOL.submit(sources.form_link, "add-environment/add-environment"),
    }
    problems: list[str] = []
    got = {key: _result(job, key, problems) for key, job in jobs.items()}
    recent: list[HistoryRow] = got["recent"] or []
    reports: dict[str, LatestArtifact] = got["reports"] or {}
    drift = reports.get(DRIFT_REPORT)
    team = owner_group(entry.owner)
    return ServiceView(
        entry=entry,
        team=team,
        team_known=team is not None and snapshot.group(team) is not None,
        environments=_environments(sources, entry, got["latest"] or {}, recent, health),
        history=recent[:HISTORY_PAGE],
        more_history=len(recent) > HISTORY_PAGE,
        findings=got["findings"],
        drift=[
            r
            for r in (drift.data if drift and isinstance(drift.data, list) else [])
            if isinstance(r, dict) and r.get("service") == name
        ],
        drift_checked=drift.updated if drift else None,
        dora=got["dora"],
        scorecard=got["scorecard"],
        alerts=got["alerts"],
        monitoring=sources.monitoring.status,
        docs=got["docs"] or DocsInfo(None, "unknown", "could not be read"),
        add_environment=got["form"],
        problems=problems,
    )


def _result(job: Future[Any], what: str, problems: list[str]) -> Any:
    """A part's value, or None and a line in ``problems``: one broken part hides nothing else."""
    try:
        return job.result()
    except (SlipwayError, PrefectException, httpx.HTTPError, OSError, ValueError) as e:
        problems.append(f"{what} could not be read: {type(e).__name__}: {e}")
    return None
