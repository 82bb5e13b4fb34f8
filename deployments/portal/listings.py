"""The portal's lists: the home page's services, the teams, one team's page, the docs index.

Lists read what is cheap for many services at once: the cached catalog, the
health board, and the scorecard levels' index; a team page adds its stored
DORA report. Filters come from the query string, so they work without
JavaScript and can be bookmarked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deployments.portal.health import HealthBoard, Probe
from deployments.portal.sources import PortalSources
from slipway.errors import SlipwayError
from tasks.catalog import CatalogEntry
from tasks.catalog.entities import GroupEntity
from tasks.catalog.model import owner_group
from tasks.insights.docs_freshness import Freshness, freshness, latest_commit
from tasks.insights.dora import DoraReport
from tasks.insights.scorecards import load_spec
from tasks.insights.store import load_dora, load_levels
from tasks.techdocs import DocsMetadata, read_metadata, read_versions, site_prefix
from tasks.techdocs.metadata import DOCS_PREFIX

__all__ = [
    "DocsRow",
    "Filters",
    "ServiceRow",
    "TeamView",
    "docs_rows",
    "service_rows",
    "team_view",
    "teams",
]

NO_LEVEL = "none"
"""How a service below the first level is filtered and shown."""


@dataclass(frozen=True)
class Filters:
    """The home page's filters, each empty for "any"."""

    owner: str = ""
    system: str = ""
    level: str = ""

    def keep(self, row: ServiceRow) -> bool:
        """Whether ``row`` passes every filter that is set."""
        return (
            (not self.owner or row.entry.owner == self.owner)
            and (not self.system or row.entry.system == self.system)
            and (not self.level or row.level == self.level)
        )


@dataclass(frozen=True)
class ServiceRow:
    """One service in a list."""

    entry: CatalogEntry
    team: str | None
    level: str
    health: list[tuple[str, Probe]]

    @property
    def health_state(self) -> str:
        """``down`` if any environment is down, else ``up`` if one answers, else ``unknown``."""
        states = {p.state for _, p in self.health}
        return "down" if "down" in states else "up" if "up" in states else "unknown"


@dataclass(frozen=True)
class Choices:
    """The values each filter offers, from what the catalog holds."""

    owners: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)


def service_rows(
    sources: PortalSources, health: HealthBoard, filters: Filters
) -> tuple[list[ServiceRow], Choices]:
    """Every service that passes ``filters``, and the choices each filter offers."""
    snapshot = sources.catalog.snapshot()
    levels = load_levels(sources.store).levels
    rows = [_row(entry, levels, health) for entry in snapshot.components]
    scale = [*_level_names(levels), NO_LEVEL]
    choices = Choices(
        owners=sorted({r.entry.owner for r in rows}),
        systems=sorted({r.entry.system for r in rows if r.entry.system}),
        levels=scale,
    )
    return [r for r in rows if filters.keep(r)], choices


def _row(entry: CatalogEntry, levels: dict[str, str | None], health: HealthBoard) -> ServiceRow:
    return ServiceRow(
        entry=entry,
        team=owner_group(entry.owner),
        level=levels.get(entry.name) or NO_LEVEL,
        health=[(name, health.get(entry.name, name)) for name in entry.environment_names],
    )


def _level_names(levels: dict[str, str | None]) -> list[str]:
    """The scorecard's levels, lowest first; those on record if the scorecard cannot be read."""
    try:
        return list(load_spec().levels)
    except SlipwayError:
        return sorted({v for v in levels.values() if v})


@dataclass(frozen=True)
class TeamView:
    """A team's page: who is in it, what it owns, how it delivers."""

    name: str
    group: GroupEntity | None
    services: list[ServiceRow]
    dora: DoraReport | None
    children: list[str]


def team_view(sources: PortalSources, name: str, health: HealthBoard) -> TeamView | None:
    """The team ``name``; None when it is neither a group nor any service's owner."""
    snapshot = sources.catalog.snapshot()
    group = snapshot.group(name)
    owned = snapshot.owned_by(name)
    if group is None and not owned:
        return None
    levels = load_levels(sources.store).levels
    children = [g.name for g in snapshot.groups if g.parent == f"group:{name}"]
    return TeamView(
        name=name,
        group=group,
        services=[_row(e, levels, health) for e in owned],
        dora=load_dora(sources.store, f"group:{name}"),
        children=children,
    )


def teams(sources: PortalSources) -> list[dict[str, Any]]:
    """Every group, and every owner group that the catalog lacks, with what it owns."""
    snapshot = sources.catalog.snapshot()
    names = {g.name for g in snapshot.groups}
    names |= {t for c in snapshot.components if (t := owner_group(c.owner))}
    return [
        {
            "name": name,
            "group": snapshot.group(name),
            "services": [c.name for c in snapshot.owned_by(name)],
        }
        for name in sorted(names)
    ]


@dataclass(frozen=True)
class DocsRow:
    """One service on the docs index."""

    entry: CatalogEntry
    docs: DocsMetadata | None
    versions: tuple[str, ...]
    freshness: Freshness
    note: str

    @property
    def path(self) -> str:
        """The site's path on the portal."""
        return "/" + site_prefix(self.entry.name).removeprefix(DOCS_PREFIX)

    @property
    def flagged(self) -> bool:
        """Missing, stale or unreadable docs: what someone should look at."""
        return self.freshness not in ("fresh", "behind")


def docs_rows(sources: PortalSources) -> tuple[list[DocsRow], list[str]]:
    """Every service's docs and their freshness, and what could not be read."""
    problems: list[str] = []

    def row(entry: CatalogEntry) -> DocsRow:
        docs: DocsMetadata | None = None
        versions: tuple[str, ...] = ()
        latest = None
        try:
            docs = read_metadata(sources.store, entry.name)
            versions = tuple(v.name for v in read_versions(sources.store, entry.name))
            latest = latest_commit(sources.catalog.server, entry.name)
        except SlipwayError as e:  # one service's problem must not hide the others
            problems.append(f"{entry.name}: {e}")
        state, note = freshness(docs, latest, stale_after=sources.stale_after)
        return DocsRow(entry, docs, versions, state, note)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="portal-docs") as pool:
        rows = list(pool.map(row, sources.catalog.snapshot().components))
    return rows, problems
