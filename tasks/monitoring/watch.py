"""The release's side of analysis: watch what was just switched to, as a task of the release run.

It points Prometheus at the new version first (the scrape targets carry the
commit), then runs `tasks.monitoring.analysis.analyse`. A failed verdict
attaches the new container's last log lines to the run; rolling back is the
release flow's business.
"""

from __future__ import annotations

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

__all__ = ["analyse_release"]


@task(name="analyse-release", cache_policy=NO_CACHE)
def analyse_release(
    client: docker.DockerClient, release: Release, *, watch: bool = True
) -> Verdict:
    """Point Prometheus at ``release``, then watch it for the analysis window (if ``watch``).

    A rollback passes ``watch=False``: it is how an incident ends, and is not
    second-guessed, but Prometheus must still follow it.
    """
    # Imported here: the sync reads the release contract, whose package holds
    # the rollout that calls this task.
    from tasks.monitoring.sync import sync_monitoring

    logger = get_run_logger()
    layout = MonitoringLayout.from_env()
    try:
        sync_monitoring(layout)  # the new commit becomes a target now, not at the next sync
    except SlipwayError as e:
        logger.warning("Scrape targets not refreshed after the release: %s", e)
    if not watch:
        return Verdict("skipped", "a rollback is not analysed")
    settings = MonitoringSettings.load_default()
    if settings.analysis_window_seconds <= 0:
        return Verdict("skipped", "release analysis is off (analysis window 0)")
    logger.info(
        "Watching %s in %s at %s for %.0f s (release analysis)",
        release.service,
        release.environment,
        release.sha[:12],
        settings.analysis_window_seconds,
    )
    verdict = analyse(
        Prometheus(layout.prometheus_url, layout.basic_auth()),
        settings,
        service=release.service,
        environment=release.environment,
        sha=release.sha,
    )
    if verdict.outcome == "inconclusive":
        logger.warning("NOT WATCHED: %s. The release stays.", verdict.reason)
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
