"""The release's side of analysis: watch what was just switched to, as a task of the release run.

`follow_release` points Prometheus at the new version (the scrape targets
carry the commit); `analyse_release` then runs `tasks.monitoring.analysis.analyse`.
A failed verdict attaches the new container's last log lines to the run;
rolling back is the release flow's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.monitoring import MonitoringSettings
from slipway.errors import SlipwayError
from tasks.monitoring.analysis import Verdict, analyse
from tasks.monitoring.layout import MonitoringLayout
from tasks.monitoring.prometheus import Prometheus

if TYPE_CHECKING:
    import docker

    from tasks.release.contract import Release

__all__ = ["analyse_release", "follow_release"]


@task(name="follow-release", cache_policy=NO_CACHE)
def follow_release(release: Release) -> MonitoringSettings:
    """Point Prometheus at ``release`` now, and return the analysis settings in force for it.

    Called while the release still holds its slot, so two releases never
    write the scrape targets at once (the older one could write what it read
    before the newer switch). A rollback calls it too: it is not analysed,
    but Prometheus must follow it back.
    """
    # Imported here: the sync reads the release contract, whose package holds
    # the rollout that calls this task.
    from tasks.monitoring.sync import sync_monitoring

    try:
        sync_monitoring(MonitoringLayout.from_env())  # a target now, not at the next sync
    except SlipwayError as e:
        get_run_logger().warning("Scrape targets not refreshed after the release: %s", e)
    return MonitoringSettings.load_default()


@task(name="analyse-release", cache_policy=NO_CACHE)
def analyse_release(
    client: docker.DockerClient,
    release: Release,
    settings: MonitoringSettings,
    *,
    replaced: Callable[[], str | None] = lambda: None,
    served_since: Callable[[], float] = lambda: float("-inf"),
) -> Verdict:
    """Watch ``release`` for the analysis window, until a newer release ``replaced`` it.

    Runs after the release handed its slot back (`tasks.release.slot`): a
    newer push may switch meanwhile, and the analysis then ends as
    ``superseded`` at its next look. ``served_since`` says when the watched
    container last started: one restarted after a newer switch failed counts
    only what it answered since (`tasks.monitoring.analysis.analyse`).
    """
    logger = get_run_logger()
    if settings.analysis_window_seconds <= 0:
        return Verdict("skipped", "release analysis is off (analysis window 0)")
    logger.info(
        "Watching %s in %s at %s for %.0f s (release analysis)",
        release.service,
        release.environment,
        release.sha[:12],
        settings.analysis_window_seconds,
    )
    layout = MonitoringLayout.from_env()
    verdict = analyse(
        Prometheus(layout.prometheus_url, layout.basic_auth()),
        settings,
        service=release.service,
        environment=release.environment,
        sha=release.sha,
        replaced=replaced,
        served_since=served_since,
    )
    if verdict.outcome == "inconclusive":
        logger.warning("NOT WATCHED: %s. The release stays.", verdict.reason)
    elif verdict.outcome == "superseded":
        logger.warning("Release analysis stopped after %.0f s: %s", verdict.seconds, verdict.reason)
    elif verdict.failed:
        logger.error("Release analysis failed after %.0f s: %s", verdict.seconds, verdict.reason)
        _attach_log(client, release, verdict.reason)
    else:
        logger.info("Release analysis %s: %s", verdict.outcome, verdict.reason)
    return verdict


def _attach_log(client: docker.DockerClient, release: Release, why: str) -> None:
    from tasks.monitoring.logs import attach_log_tail, service_container

    try:
        container = service_container(client, release.service, release.environment)
    except SlipwayError:
        return
    attach_log_tail(container, why=f"release analysis failed: {why}")
