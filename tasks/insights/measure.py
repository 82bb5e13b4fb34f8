"""The insights steps: measure a service's DORA metrics, a team's, and score a service.

Each step reads once from where the platform records things (Prefect's
release records and artifacts, the artifact store, the catalog), keeps its
result in the artifact store (`tasks.insights.store`) and returns it. The
``nightly-insights`` and ``evaluate-service`` flows tell the story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.model import CatalogModel
from tasks.insights.docs_freshness import DEFAULT_STALE_AFTER
from tasks.insights.dora import (
    PRODUCTION,
    ChangeFacts,
    DoraReport,
    HealthFailure,
    classify,
    dora_report,
    prod_releases,
)
from tasks.insights.facts import DRIFT_REPORT, FactSources, gather_facts, tests_key
from tasks.insights.health_log import ingest_health_events, load_health_events
from tasks.insights.records import all_records, latest_artifacts
from tasks.insights.scorecards import (
    LEVEL_CHANGED_EVENT,
    Scorecard,
    ScorecardSpec,
    evaluate,
    load_spec,
)
from tasks.insights.store import load_scorecard, save_dora, save_scorecard
from tasks.monitoring.view import monitoring_view
from tasks.release import DeploymentRecord
from tasks.storage import ObjectStore

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from blocks.git_server import GitServer

__all__ = [
    "HEALTH_LOOKBACK",
    "Insights",
    "ServiceMeasure",
    "collect_health_events",
    "dora_rows",
    "measure_service",
    "measure_team",
    "open_insights",
    "publish_insights",
    "score_service",
    "service_facts",
]

HEALTH_LOOKBACK = timedelta(days=8)
"""Health events are copied from this far back: longer than Prefect keeps them by default."""


@dataclass(frozen=True)
class Insights:
    """What one evaluation reads from and scores against."""

    sources: FactSources
    spec: ScorecardSpec
    now: datetime


@dataclass(frozen=True)
class ServiceMeasure:
    """One service's records and what DORA made of them."""

    service: str
    records: tuple[DeploymentRecord, ...]
    facts: tuple[ChangeFacts, ...]
    report: DoraReport = field(repr=False)


def open_insights(
    client: SyncPrefectClient,
    store: ObjectStore,
    server: GitServer,
    *,
    now: datetime,
    scorecards: Path | None = None,
) -> Insights:
    """Read the catalog, the scorecard and the latest reports once, for every step to share."""
    snapshot = CatalogModel(Catalog(server)).read()
    keys = [DRIFT_REPORT, *(tests_key(c.name) for c in snapshot.components)]
    sources = FactSources(
        snapshot=snapshot,
        store=store,
        server=server,
        client=client,
        monitoring=monitoring_view(),
        latest=latest_artifacts(client, keys),
        stale_after=DEFAULT_STALE_AFTER,
    )
    return Insights(sources, load_spec(scorecards), now)


@task(name="collect-health-events", cache_policy=NO_CACHE)
def collect_health_events(insights: Insights) -> int:
    """Copy recent health-failure events into the store, where DORA finds them for 90 days."""
    added = ingest_health_events(
        insights.sources.client,
        insights.sources.store,
        since=insights.now - HEALTH_LOOKBACK,
        now=insights.now,
    )
    get_run_logger().info("%d new health failures recorded", added)
    return added


def service_facts(
    client: SyncPrefectClient, store: ObjectStore, service: str
) -> tuple[list[DeploymentRecord], list[ChangeFacts]]:
    """A service's release records, and DORA's facts about each of its prod releases."""
    records = all_records(client, service)
    failures = [
        HealthFailure(e.at, e.detail)
        for e in load_health_events(store, service)
        if e.environment == PRODUCTION
    ]
    return records, classify(prod_releases(records), failures)


@task(name="measure-service", cache_policy=NO_CACHE)
def measure_service(insights: Insights, service: str) -> ServiceMeasure:
    """The service's DORA metrics over every window, from all its records; kept in the store."""
    records, facts = service_facts(insights.sources.client, insights.sources.store, service)
    report = dora_report(f"component:{service}", {service: facts}, now=insights.now)
    save_dora(insights.sources.store, report)
    return ServiceMeasure(service, tuple(records), tuple(facts), report)


@task(name="measure-team", cache_policy=NO_CACHE)
def measure_team(insights: Insights, team: str, measures: list[ServiceMeasure]) -> DoraReport:
    """A team's DORA metrics, pooled over the services it owns; kept in the store."""
    pooled = {m.service: list(m.facts) for m in measures}
    report = dora_report(f"group:{team}", pooled, now=insights.now)
    save_dora(insights.sources.store, report)
    return report


@task(name="score-service", cache_policy=NO_CACHE)
def score_service(insights: Insights, entry: CatalogEntry, measure: ServiceMeasure) -> Scorecard:
    """Judge the service's checks; a level that moved is a ``slipway.scorecard.level-changed`` event."""
    store = insights.sources.store
    facts = gather_facts(insights.sources, entry, measure.records, measure.report, now=insights.now)
    card = evaluate(insights.spec, entry.name, facts, now=insights.now)
    previous = load_scorecard(store, entry.name)
    save_scorecard(store, card)
    if previous is not None and previous.level != card.level:
        get_run_logger().info(
            "%s moved from %s to %s",
            entry.name,
            previous.level or "no level",
            card.level or "no level",
        )
        emit_event(
            event=LEVEL_CHANGED_EVENT,
            resource={
                "prefect.resource.id": f"slipway.service.{entry.name}",
                "prefect.resource.name": entry.name,
            },
            payload={
                "service": entry.name,
                "previous": previous.level,
                "level": card.level,
                "blocking": [c.id for c in card.blocking()],
            },
        )
    return card


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def dora_rows(reports: list[DoraReport]) -> list[dict[str, str]]:
    """Every window of every report as table rows, for an artifact or `slipway dora`."""
    return [
        {
            "subject": report.subject,
            "days": str(m.window_days),
            "deployments": str(m.deployments),
            "per week": f"{m.deployments_per_week:.2f}",
            "lead time": _hours(m.lead_time_hours),
            "change failure rate": _rate(m.change_failure_rate),
            "recovery time": _hours(m.recovery_hours),
            "rework rate": _rate(m.rework_rate),
        }
        for report in reports
        for m in report.windows
    ]


def publish_insights(reports: list[DoraReport], cards: list[Scorecard]) -> None:
    """Leave the ``dora-metrics`` and ``scorecards`` table artifacts of this evaluation."""
    rows = dora_rows(reports)
    create_table_artifact(
        key="dora-metrics",
        table=rows or [{"subject": "(none)", "days": "-"}],
        description=f"DORA metrics of {len(reports)} services and teams",
    )
    create_table_artifact(
        key="scorecards",
        table=[
            {
                "service": c.service,
                "level": c.level or "none",
                "next": c.next_level or "-",
                "blocking": ", ".join(b.id for b in c.blocking()) or "-",
            }
            for c in cards
        ]
        or [{"service": "(none)", "level": "-"}],
        description=f"Scorecards of {len(cards)} services",
    )
