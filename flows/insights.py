"""Insights: every service's and team's DORA metrics and scorecard, nightly and after each release.

``nightly-insights`` copies recent health failures into the store, brings
the catalog's derived entities up to date, measures every service and every
owning team over 7, 30 and 90 days, scores every service, and leaves the
``dora-metrics`` and ``scorecards`` tables. ``evaluate-service`` does the
same for one service and its team; a deployment trigger runs it after every
release, so a level moves as soon as a release moves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_client, get_run_logger
from pydantic import BaseModel

from blocks import ArtifactStore, GitServer
from slipway.names import ServiceName
from tasks.catalog import Catalog
from tasks.catalog.model import CatalogModel, owner_group
from tasks.insights.measure import (
    collect_health_events,
    measure_service,
    measure_team,
    open_insights,
    publish_insights,
    score_service,
)
from tasks.insights.scorecards import Scorecard
from tasks.storage import open_store

__all__ = ["InsightsSummary", "evaluate_service", "nightly_insights"]


class InsightsSummary(BaseModel):
    """What an evaluation scored: each service's level and each team it measured."""

    levels: dict[str, str | None]
    teams: list[str]


@flow(name="nightly-insights", log_prints=False)
def nightly_insights(scorecards: str = "") -> InsightsSummary:
    """Measure every service and team and score every service.

    Args:
        scorecards: A scorecard YAML file to judge by; empty for the one Slipway ships.
    """
    server = GitServer.load_default()
    CatalogModel.load_default().sync(message="Nightly: rewrite the derived entities")
    store = open_store(ArtifactStore.load_default())
    with get_client(sync_client=True) as client:
        insights = open_insights(
            client, store, server, now=datetime.now(UTC), scorecards=_path(scorecards)
        )
        collect_health_events(insights)
        components = insights.sources.snapshot.components
        measures = {c.name: measure_service(insights, c.name) for c in components}
        teams = sorted({t for c in components if (t := owner_group(c.owner))})
        reports = [m.report for m in measures.values()]
        for team in teams:
            owned = insights.sources.snapshot.owned_by(team)
            reports.append(measure_team(insights, team, [measures[c.name] for c in owned]))
        cards = [score_service(insights, c, measures[c.name]) for c in components]
    publish_insights(reports, cards)
    get_run_logger().info("Scored %d services and %d teams", len(cards), len(teams))
    return InsightsSummary(levels={c.service: c.level for c in cards}, teams=teams)


@flow(name="evaluate-service", log_prints=False)
def evaluate_service(service: ServiceName, scorecards: str = "") -> Scorecard:
    """Measure one service and its team again and score the service, e.g. after a release.

    Args:
        service: A service in the catalog.
        scorecards: A scorecard YAML file to judge by; empty for the one Slipway ships.
    """
    server = GitServer.load_default()
    store = open_store(ArtifactStore.load_default())
    with get_client(sync_client=True) as client:
        insights = open_insights(
            client, store, server, now=datetime.now(UTC), scorecards=_path(scorecards)
        )
        snapshot = insights.sources.snapshot
        entry = next((c for c in snapshot.components if c.name == service), None)
        if entry is None:
            entry = Catalog(server).get(service)  # raises, naming the known services
        measure = measure_service(insights, service)
        team = owner_group(entry.owner)
        if team is not None:
            owned = [
                measure_service(insights, c.name)
                for c in snapshot.owned_by(team)
                if c.name != service
            ]
            measure_team(insights, team, [measure, *owned])
        return score_service(insights, entry, measure)


def _path(raw: str) -> Path | None:
    return Path(raw) if raw.strip() else None
