"""Release analysis, after Argo Rollouts: watch the new version for a while after the switch.

For `MonitoringSettings.analysis_window_seconds` after the switch, every
``analysis_interval_seconds``, Prometheus is asked three things about the
new version (its series carry the commit as ``sha``):

1. Does an alert of the service's environment fire that became active after
   the switch (``ALERTS`` and ``ALERTS_FOR_STATE``)?
2. Is its 5xx ratio over the service's threshold (once it has had requests)?
3. Has its health probe failed ``analysis_probe_failures`` times in a row?

Only what the watched container answered since its latest start counts: a
newer release whose switch failed on the port answered there under this
version's label, and its failures are not this version's.

The first yes ends the analysis as failed, with the reason; the caller rolls
back. A newer release that replaced the watched one ends it as *superseded*
at the next look: it is no longer what serves, so it is neither judged nor
rolled back. When Prometheus cannot be asked (not installed, not running, or it
stops answering for three looks in a row) the analysis is *inconclusive*:
the release stays, and the run says loudly that it was not watched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from blocks.monitoring import MonitoringSettings
from slipway.errors import MonitoringError
from tasks.monitoring.prometheus import Prometheus
from tasks.monitoring.rules import duration

__all__ = ["Verdict", "analyse"]

logger = logging.getLogger(__name__)

_ERROR_LIMIT = 3
"""Looks in a row that Prometheus may fail before the analysis is inconclusive."""


@dataclass(frozen=True)
class Verdict:
    """How the new version did."""

    outcome: Literal["passed", "failed", "inconclusive", "skipped", "superseded"]
    reason: str
    """Why, in one sentence, for the run's log, the record and the notification."""
    looks: int = 0
    """How many times Prometheus was asked."""
    seconds: float = 0.0
    """How long the analysis watched."""

    @property
    def failed(self) -> bool:
        """Whether the release must be rolled back."""
        return self.outcome == "failed"


@dataclass(frozen=True)
class _Queries:
    alerts: str
    errors: str
    requests: str
    probe: str


def _queries(service: str, environment: str, sha: str, window: str, since: float) -> _Queries:
    where = f'service="{service}", environment="{environment}"'
    new = f'{where}, sha="{sha[:12]}"'
    requests = f"sum(increase(http_requests_total{{{new}}}[{window}]))"
    # Alerts that became active after the switch: one that fired before it is
    # not the new version's doing, and rolling back would not end it.
    started = f'ALERTS_FOR_STATE{{{where}, audience="team"}} >= {since:.3f}'
    firing = f'ALERTS{{{where}, alertstate="firing"}}'
    return _Queries(
        alerts=f"({started}) and on(alertname) {firing}",
        errors=f'sum(increase(http_requests_total{{{new}, status=~"5.."}}[{window}]))',
        requests=requests,
        # Its latest probe within the window: an older one may be another container's.
        probe=f"min(last_over_time(probe_success{{{new}}}[{window}]))",
    )


def _counted(settings: MonitoringSettings, began: float, served_since: float) -> tuple[str, float]:
    """The range the next look counts, and since when alerts are its doing.

    The scrape target is the port, labelled with the serving version: a
    newer release whose switch failed there answered under this version's
    label until it was given up and this container started again. So only
    what was answered since this container's latest start counts, within the
    rate window.
    """
    since = max(began, served_since)
    rate = min(settings.rate_window_seconds, time.time() - served_since)
    return duration(max(rate, 0.001)), since


def analyse(
    prometheus: Prometheus,
    settings: MonitoringSettings,
    *,
    service: str,
    environment: str,
    sha: str,
    replaced: Callable[[], str | None] = lambda: None,
    served_since: Callable[[], float] = lambda: float("-inf"),
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Watch the new version of ``service`` in ``environment`` for the analysis window.

    ``replaced`` is asked before every look: what replaced the watched
    version, or None while it still serves; an answer ends the analysis as
    ``superseded``. ``served_since`` is too: when the watched container last
    started (epoch seconds). A later start than at the previous look means
    it was restarted (a newer release failed to switch on its port), and
    only what it answered since counts.
    """
    if (unwatched := _unwatched(prometheus, settings)) is not None:
        return unwatched
    window = settings.analysis_window_seconds
    ratio_limit, _ = settings.thresholds(service)
    began, switched = time.monotonic(), time.time()
    looks = errors = probe_failures = 0
    serving_since = float("-inf")
    while True:
        if (newer := replaced()) is not None:
            return Verdict("superseded", newer, looks, time.monotonic() - began)
        looks += 1
        if (started := served_since()) != serving_since:
            serving_since, probe_failures = started, 0  # restarted: earlier failures were not its
        counted, since = _counted(settings, switched, serving_since)
        try:
            q = _queries(service, environment, sha, counted, since)
            reason, probe_failed = _look(prometheus, q, ratio_limit)
            errors = 0
        except MonitoringError as e:
            errors += 1
            logger.warning("analysis look %d of %s/%s failed: %s", looks, service, environment, e)
            if errors >= _ERROR_LIMIT:
                return Verdict(
                    "inconclusive",
                    f"Prometheus stopped answering: {e.message}",
                    looks,
                    time.monotonic() - began,
                )
            reason, probe_failed = None, False
        probe_failures = probe_failures + 1 if probe_failed else 0
        if reason is None and probe_failures >= settings.analysis_probe_failures:
            reason = f"its health probe failed {probe_failures} times in a row"
        elapsed = time.monotonic() - began
        if reason is not None:
            return Verdict("failed", reason, looks, elapsed)
        if elapsed >= window:
            return Verdict(
                "passed", f"no alert, 5xx ratio and probe fine for {elapsed:.0f} s", looks, elapsed
            )
        sleep(min(settings.analysis_interval_seconds, max(0.0, window - elapsed)))


def _unwatched(prometheus: Prometheus, settings: MonitoringSettings) -> Verdict | None:
    """Why nothing can be watched (analysis off, Prometheus silent), or None to go on."""
    if settings.analysis_window_seconds <= 0:
        return Verdict("skipped", "release analysis is off (analysis window 0)")
    if not prometheus.ready():
        return Verdict(
            "inconclusive",
            f"Prometheus at {prometheus.url} does not answer, so the new version was not "
            "watched; check `slipway status`",
        )
    return None


def _look(prometheus: Prometheus, q: _Queries, ratio_limit: float) -> tuple[str | None, bool]:
    """One look: the reason to fail now (or None), and whether the probe failed."""
    firing = sorted({labels.get("alertname", "?") for labels in prometheus.series(q.alerts)})
    if firing:
        return f"the alert {', '.join(firing)} fired after the switch", False
    requests = prometheus.value(q.requests)
    if requests:
        failed = prometheus.value(q.errors) or 0.0
        ratio = failed / requests
        if ratio > ratio_limit:
            return (
                f"{ratio:.0%} of its answers were 5xx ({failed:.0f} of {requests:.0f}), "
                f"over the {ratio_limit:.1%} threshold",
                False,
            )
    probe = prometheus.value(q.probe)
    return None, probe == 0
