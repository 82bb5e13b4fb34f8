"""DORA's five metrics, from the platform's own history of releases to production.

The inputs are what Slipway already records: every release attempt to
``prod`` (`tasks.release.history.DeploymentRecord`: build-test-deploy and
promote are *changes*, rollback is not), the commit time of each change, and
health failures seen in prod (`HealthFailure`, from monitoring). From them,
per service (`classify`), then over a window for a service or a team
(`dora_metrics`):

- **Deployment frequency**: changes that succeeded, per day of the window.
- **Change lead time**: median time from a change's commit to its running in
  prod (the record's ``at``), over the changes that succeeded.
- **Change failure rate**: the share of changes that failed. A change fails
  when its own health check failed (the release kept the old version), when
  health failures were seen while it served, or when it was rolled back.
- **Failed deployment recovery time**: median time from a failure's start
  (the failed attempt, the first health failure, or the change that was
  rolled back going live) to the next successful release of any kind: the
  rollback or the fix-forward that ended it.
- **Rework rate**: the share of successful releases that were unplanned:
  every rollback, and every change that ended a failure (a fix-forward).

A change counts in the window it was attempted in; a recovery and a rework
release in the window they ended in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.release import DeploymentRecord

__all__ = [
    "PRODUCTION",
    "WINDOWS",
    "ChangeFacts",
    "DoraMetrics",
    "DoraReport",
    "HealthFailure",
    "ProdRelease",
    "classify",
    "dora_metrics",
    "dora_report",
    "prod_releases",
]

PRODUCTION = "prod"
"""The environment whose releases DORA measures; the same name delivery's approval gate uses."""
WINDOWS = (7, 30, 90)
"""The windows every report covers, in days."""

Action = Literal["build-test-deploy", "promote", "rollback"]


@dataclass(frozen=True)
class ProdRelease:
    """One release attempt to production, as DORA needs it."""

    at: datetime
    """When the attempt ended (the record's ``at``), timezone-aware."""
    action: Action
    succeeded: bool
    committed_at: datetime | None = None
    """When the released commit was made; None when the history does not say."""

    @property
    def is_change(self) -> bool:
        """Build-test-deploy and promote bring a change; a rollback only returns to one."""
        return self.action != "rollback"


@dataclass(frozen=True)
class HealthFailure:
    """A failed health check or firing alert of the production environment."""

    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class ChangeFacts:
    """What DORA needs to know about one release, worked out once from the whole history."""

    release: ProdRelease
    lead_time: timedelta | None = None
    """Commit to running in prod, for a change that succeeded with a known commit time."""
    failed: bool = False
    """A change whose health check failed, that saw health failures, or was rolled back."""
    recovered_at: datetime | None = None
    """When the failure ended; None while it lasts, or for a change that did not fail."""
    recovery: timedelta | None = None
    """From the failure's start to ``recovered_at``."""
    rework: bool = False
    """A rollback, or a change that ended a failure (a fix-forward)."""


def prod_releases(
    records: Iterable[DeploymentRecord], *, environment: str = PRODUCTION
) -> list[ProdRelease]:
    """The release attempts to ``environment`` among a service's records, with commit times.

    A promotion's record has no commit time of its own: it is the one the
    build of the same sha recorded, in whichever environment that ran.
    """
    pool = list(records)
    committed = {r.sha: _aware(r.committed_at) for r in pool if r.committed_at}
    return [
        ProdRelease(
            at=_aware(r.at),
            action=r.action,
            succeeded=r.outcome == "succeeded",
            committed_at=committed.get(r.sha),
        )
        for r in pool
        if r.environment == environment and r.outcome in ("succeeded", "failed")
    ]


def _aware(value: datetime | str) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def classify(
    releases: Iterable[ProdRelease], failures: Iterable[HealthFailure]
) -> list[ChangeFacts]:
    """Work out, for each release of one service, lead time, failure, recovery and rework."""
    ordered = sorted(releases, key=lambda r: r.at)
    seen = sorted(f.at for f in failures)
    succeeded = [i for i, r in enumerate(ordered) if r.succeeded]
    facts: list[ChangeFacts] = []
    fixes: set[int] = set()
    for i, release in enumerate(ordered):
        if not release.is_change:
            facts.append(ChangeFacts(release, rework=release.succeeded))
            continue
        end = next((j for j in succeeded if j > i), None)
        ended_by = ordered[end] if end is not None else None
        start = _failure_start(release, ended_by, seen)
        if start is None:
            facts.append(ChangeFacts(release, lead_time=_lead_time(release)))
            continue
        if end is not None and ordered[end].is_change:
            fixes.add(end)  # the change that ended a failure: a fix-forward
        recovered = ended_by.at if ended_by is not None else None
        facts.append(
            ChangeFacts(
                release,
                lead_time=_lead_time(release),
                failed=True,
                recovered_at=recovered,
                recovery=recovered - start if recovered is not None else None,
            )
        )
    return [replace(f, rework=True) if i in fixes else f for i, f in enumerate(facts)]


def _failure_start(
    release: ProdRelease, ended_by: ProdRelease | None, health_failures: Sequence[datetime]
) -> datetime | None:
    """When ``release`` started failing in production, or None when it did not fail."""
    if not release.succeeded:
        return release.at  # its own health check failed; the old version kept serving
    until = ended_by.at if ended_by else None
    during = [t for t in health_failures if t >= release.at and (until is None or t < until)]
    if during:
        return during[0]
    if ended_by is not None and not ended_by.is_change:
        return (
            release.at
        )  # rolled back with no health failure on record: failing since it went live
    return None


def _lead_time(release: ProdRelease) -> timedelta | None:
    if not release.succeeded or release.committed_at is None:
        return None
    return max(release.at - release.committed_at, timedelta(0))


class DoraMetrics(BaseModel):
    """The five metrics over one window, as stored, printed and shown."""

    model_config = ConfigDict(frozen=True)

    window_days: int
    deployments: int = Field(description="Changes that reached prod in the window.")
    attempts: int = Field(description="Changes attempted, failed ones included.")
    deployment_frequency: float = Field(description="Deployments per day.")
    lead_time_hours: float | None = Field(description="Median commit-to-prod time.")
    lead_time_samples: int = Field(description="Deployments with a known commit time.")
    change_failure_rate: float | None = Field(description="Failed changes / changes attempted.")
    failed_changes: int
    recovery_hours: float | None = Field(description="Median failed deployment recovery time.")
    recoveries: int = Field(description="Failures that ended in the window.")
    rework_rate: float | None = Field(description="Rollbacks and fix-forwards / releases.")
    rework_releases: int

    @property
    def deployments_per_week(self) -> float:
        """The frequency as people say it."""
        return self.deployment_frequency * 7


class DoraReport(BaseModel):
    """Every window of one service or team, when it was worked out, and from what."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(description="``component:<service>`` or ``group:<team>``.")
    computed_at: datetime
    services: tuple[str, ...] = Field(description="The services it covers.")
    windows: tuple[DoraMetrics, ...]

    def window(self, days: int) -> DoraMetrics | None:
        """The metrics of the ``days``-day window, when the report has it."""
        return next((w for w in self.windows if w.window_days == days), None)


def dora_metrics(facts: Iterable[ChangeFacts], *, now: datetime, days: int) -> DoraMetrics:
    """The metrics of ``facts`` (of one service, or pooled across a team) over the last ``days``."""
    since = now - timedelta(days=days)

    def within(when: datetime | None) -> bool:
        return when is not None and since < when <= now

    pool = list(facts)
    changes = [f for f in pool if f.release.is_change and within(f.release.at)]
    deployed = [f for f in changes if f.release.succeeded]
    lead = [f.lead_time.total_seconds() / 3600 for f in deployed if f.lead_time is not None]
    failed = [f for f in changes if f.failed]
    recovered = [
        f.recovery.total_seconds() / 3600 for f in pool if f.recovery and within(f.recovered_at)
    ]
    releases = [f for f in pool if f.release.succeeded and within(f.release.at)]
    rework = [f for f in releases if f.rework]
    return DoraMetrics(
        window_days=days,
        deployments=len(deployed),
        attempts=len(changes),
        deployment_frequency=len(deployed) / days,
        lead_time_hours=median(lead) if lead else None,
        lead_time_samples=len(lead),
        change_failure_rate=len(failed) / len(changes) if changes else None,
        failed_changes=len(failed),
        recovery_hours=median(recovered) if recovered else None,
        recoveries=len(recovered),
        rework_rate=len(rework) / len(releases) if releases else None,
        rework_releases=len(rework),
    )


def dora_report(
    subject: str,
    facts_by_service: dict[str, list[ChangeFacts]],
    *,
    now: datetime,
    windows: Sequence[int] = WINDOWS,
) -> DoraReport:
    """Every window for ``subject``, pooling the facts of each of its services."""
    pooled = [f for facts in facts_by_service.values() for f in facts]
    return DoraReport(
        subject=subject,
        computed_at=now,
        services=tuple(sorted(facts_by_service)),
        windows=tuple(dora_metrics(pooled, now=now, days=days) for days in windows),
    )
