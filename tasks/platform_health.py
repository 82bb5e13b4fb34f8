"""Whether the systems the platform's configuration blocks point at work, all in one probe.

The git server, the registry, the deploy target's Docker engine and the
artifact store, as their ``default`` blocks configure them. `slipway status`
shows the same checks beside the processes of `up`.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from blocks import ArtifactStore, ContainerRegistry, DeployTarget, GitServer
from slipway.errors import ComponentError, SlipwayError
from slipway.health import ComponentHealth
from slipway.run_log import run_logger
from tasks.containers import check_docker
from tasks.git import check_git_server
from tasks.registry import check_registry
from tasks.storage import open_store

__all__ = ["probe_configured_systems", "probe_platform", "report_platform_health"]


def _check_store(block: ArtifactStore) -> ComponentHealth:
    store = open_store(block)
    try:
        store.check()
    except SlipwayError as e:
        return ComponentHealth("artifacts", store.describe(), False, str(e))
    return ComponentHealth("artifacts", store.describe(), True, "readable and writable")


def probe_configured_systems() -> list[ComponentHealth]:
    """Check every system that the ``default`` blocks point at, outside any flow run."""
    return [
        check_git_server(GitServer.load_default()),
        check_registry(ContainerRegistry.load_default()),
        check_docker(DeployTarget.load_default()),
        _check_store(ArtifactStore.load_default()),
    ]


@task(name="probe-configured-systems", retries=1, retry_delay_seconds=2)
def probe_platform() -> list[ComponentHealth]:
    """`probe_configured_systems`, as a step of a flow run."""
    return probe_configured_systems()


@task(name="report-platform-health")
def report_platform_health(
    results: list[ComponentHealth], *, include_optional: bool
) -> list[ComponentHealth]:
    """The ``platform-health`` table; fails when a required part (or, with ``include_optional``, any part) is down.

    Raises:
        ComponentError: Naming each part that is down, with its cause and fix.
    """
    create_table_artifact(
        key="platform-health",
        table=[
            {"component": r.name, "where": r.url, "healthy": r.healthy, "detail": r.detail}
            for r in results
        ],
        description="Health of every system Slipway is configured to use.",
    )
    logger = run_logger(__name__)
    for r in results:
        log = logger.info if r.healthy else logger.error
        log("%s at %s: %s", r.name, r.url, r.detail)
    broken = [r for r in results if not r.healthy and (r.required or include_optional)]
    if broken:
        names = ", ".join(r.name for r in broken)
        raise ComponentError(f"unhealthy: {names}", hint="; ".join(r.detail for r in broken))
    return results
