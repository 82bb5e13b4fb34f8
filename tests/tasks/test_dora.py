"""DORA's five metrics against a fixture history whose every value was worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.insights.dora import (
    DoraMetrics,
    HealthFailure,
    ProdRelease,
    classify,
    dora_metrics,
    dora_report,
    prod_releases,
)
from tasks.release import DeploymentRecord

NOW = datetime(2025, 3, 31, tzinfo=UTC)


def t(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


# payments-api's prod history. Lead time is at - committed_at.
PAYMENTS = [
    # E1: promote ok, committed 01-09 10:00: lead 24 h. Only in the 90-day window.
    ProdRelease(t(1, 10, 10), "promote", True, t(1, 9, 10)),
    # E2: promote ok, commit time unknown: no lead time sample.
    ProdRelease(t(3, 3, 12), "promote", True, None),
    # E3: promote ok, lead 24 h; rolled back by E4 two hours later: failed, recovery 2 h.
    ProdRelease(t(3, 5, 12), "promote", True, t(3, 4, 12)),
    # E4: the rollback: rework.
    ProdRelease(t(3, 5, 14), "rollback", True),
    # E5: its own health check failed (old version kept serving): failed; E6 ends it: 4 h.
    ProdRelease(t(3, 10, 9), "promote", False, t(3, 9, 9)),
    # E6: ok, lead 1 h; a fix-forward of E5 (rework). H1 at 03-12 08:00 while it serves:
    # failed too, and E7 ends that at 09:00: recovery 1 h.
    ProdRelease(t(3, 10, 13), "build-test-deploy", True, t(3, 10, 12)),
    # E7: ok, lead 0.5 h; a fix-forward of E6 (rework).
    ProdRelease(t(3, 12, 9), "promote", True, t(3, 12, 8, 30)),
    # E8: ok, lead 24 h.
    ProdRelease(t(3, 25, 10), "promote", True, t(3, 24, 10)),
    # E9: ok, lead 12 h; H2 at 03-30 12:00 and nothing since: failed, not recovered yet.
    ProdRelease(t(3, 28, 10), "promote", True, t(3, 27, 22)),
    # A failed rollback changes nothing: neither a change nor a release.
    ProdRelease(t(3, 29, 10), "rollback", False),
]
PAYMENTS_HEALTH = [HealthFailure(t(3, 12, 8), "down"), HealthFailure(t(3, 30, 12), "5xx")]
# billing, the team's other service: two quiet promotions, lead 24 h and 2 h.
BILLING = [
    ProdRelease(t(3, 20, 10), "promote", True, t(3, 19, 10)),
    ProdRelease(t(3, 26, 10), "promote", True, t(3, 26, 8)),
]


def metrics(**values: object) -> DoraMetrics:
    return DoraMetrics.model_validate(values)


PAYMENTS_30_DAYS = metrics(
    window_days=30,
    deployments=6,
    attempts=7,
    deployment_frequency=6 / 30,
    lead_time_hours=12.0,
    lead_time_samples=5,
    change_failure_rate=4 / 7,
    failed_changes=4,
    recovery_hours=2.0,
    recoveries=3,
    rework_rate=3 / 7,
    rework_releases=3,
)
"""payments-api over 30 days, as the docstring below works it out."""


def test_a_service_over_7_30_and_90_days_matches_the_hand_calculation() -> None:
    """Windows end at NOW = 2025-03-31 00:00 UTC.

    7 days (since 03-24): changes E8, E9, both ok: 2 deployments, 2/7 a day.
    Lead times 24 and 12 h: median 18 h. E9 failed (H2): CFR 1/2. No failure
    ended in the window. Releases E8, E9, neither rework: 0/2.

    30 days (since 03-01): changes E2 E3 E5 E6 E7 E8 E9 = 7 attempts, 6 ok
    (E5 failed): 6/30 a day. Lead times (E2 unknown) 24, 1, 0.5, 24, 12:
    sorted 0.5 1 12 24 24, median 12 h from 5 samples. Failed: E3 (rolled
    back), E5 (health check), E6 (H1), E9 (H2) = 4/7. Recoveries ended in
    the window: E3 2 h, E5 4 h, E6 1 h: median 2 h from 3. Releases that
    succeeded: E2 E3 E4 E6 E7 E8 E9 = 7, rework E4 (rollback), E6 (fix of
    E5), E7 (fix of E6) = 3/7.

    90 days (since 2024-12-31): adds E1 (ok, lead 24 h): 8 attempts, 7 ok,
    7/90 a day; lead 0.5 1 12 24 24 24: median (12 + 24) / 2 = 18 h from 6;
    CFR 4/8; recovery 2 h from 3; rework 3/8.
    """
    facts = classify(PAYMENTS, PAYMENTS_HEALTH)
    shape = dict(recoveries=0, recovery_hours=None)
    assert dora_metrics(facts, now=NOW, days=7) == metrics(
        window_days=7,
        deployments=2,
        attempts=2,
        deployment_frequency=2 / 7,
        lead_time_hours=18.0,
        lead_time_samples=2,
        change_failure_rate=0.5,
        failed_changes=1,
        rework_rate=0.0,
        rework_releases=0,
        **shape,
    )
    assert dora_metrics(facts, now=NOW, days=30) == PAYMENTS_30_DAYS
    assert dora_metrics(facts, now=NOW, days=90) == metrics(
        window_days=90,
        deployments=7,
        attempts=8,
        deployment_frequency=7 / 90,
        lead_time_hours=18.0,
        lead_time_samples=6,
        change_failure_rate=4 / 8,
        failed_changes=4,
        recovery_hours=2.0,
        recoveries=3,
        rework_rate=3 / 8,
        rework_releases=3,
    )


def test_a_team_pools_its_services() -> None:
    """payments (payments-api and billing), 30 days.

    Attempts 7 + 2 = 9, deployments 6 + 2 = 8: 8/30 a day. Lead times
    0.5 1 12 24 24 and 24 2: sorted 0.5 1 2 12 24 24 24, median 12 h from 7.
    Failed 4/9. Recoveries 2, 4, 1 h: median 2 h. Releases 7 + 2 = 9,
    rework 3/9. Over 7 days: E8 E9 and billing's 03-26: 3 deployments, lead
    24 12 2: median 12 h, CFR 1/3, rework 0/3.
    """
    report = dora_report(
        "group:payments",
        {"payments-api": classify(PAYMENTS, PAYMENTS_HEALTH), "billing": classify(BILLING, [])},
        now=NOW,
    )
    assert report.services == ("billing", "payments-api")
    month = report.window(30)
    assert month == metrics(
        window_days=30,
        deployments=8,
        attempts=9,
        deployment_frequency=8 / 30,
        lead_time_hours=12.0,
        lead_time_samples=7,
        change_failure_rate=4 / 9,
        failed_changes=4,
        recovery_hours=2.0,
        recoveries=3,
        rework_rate=3 / 9,
        rework_releases=3,
    )
    week = report.window(7)
    assert week is not None
    assert (week.deployments, week.lead_time_hours, week.change_failure_rate) == (3, 12.0, 1 / 3)
    assert week.rework_rate == 0.0


def test_no_history_gives_counts_of_zero_and_no_rates() -> None:
    empty = dora_metrics([], now=NOW, days=30)
    assert (empty.deployments, empty.deployment_frequency) == (0, 0.0)
    assert empty.lead_time_hours is None and empty.change_failure_rate is None
    assert empty.recovery_hours is None and empty.rework_rate is None


def test_records_become_prod_releases_with_the_builds_commit_time() -> None:
    """A promotion records no commit time: the dev build of the same sha did."""
    sha = "a" * 40

    def record(environment: str, action: str, at: datetime, **extra: str) -> DeploymentRecord:
        return DeploymentRecord.model_validate(
            {
                "service": "s",
                "environment": environment,
                "sha": sha,
                "image": f"r/s@sha256:{'0' * 64}",
                "action": action,
                "outcome": "succeeded",
                "at": at,
                **extra,
            }
        )

    records = [
        record("dev", "build-test-deploy", t(3, 1, 10), committed_at=t(3, 1, 9).isoformat()),
        record("prod", "promote", t(3, 2, 9)),
    ]
    (release,) = prod_releases(records)
    assert release == ProdRelease(t(3, 2, 9), "promote", True, t(3, 1, 9))
    (fact,) = classify([release], [])
    assert fact.lead_time is not None and fact.lead_time.total_seconds() == 24 * 3600


@pytest.mark.parametrize("days", [7, 30, 90])
def test_the_windows_of_a_report_are_the_three_dora_asks_for(days: int) -> None:
    report = dora_report("component:billing", {"billing": classify(BILLING, [])}, now=NOW)
    assert report.window(days) is not None and report.window(days).window_days == days  # type: ignore[union-attr]
