"""Is the platform able to do its job? One flow run answers for every part.

It checks the systems the platform's configuration blocks point at: the git
server, the registry, the deploy target's Docker engine and the artifact
store. `slipway status` shows the same checks beside the processes of `up`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from blocks import ArtifactStore, ContainerRegistry, DeployTarget, GitServer
from slipway.errors import ComponentError, SlipwayError
from slipway.health import ComponentHealth
from tasks.containers import check_docker
from tasks.git import check_git_server
from tasks.registry import check_registry
from tasks.storage import open_store

__all__ = ["check_platform", "probe_configured_systems"]


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
def _probe() -> list[ComponentHealth]:
    return probe_configured_systems()


@flow(name="platform-check", log_prints=False)
def check_platform(include_optional: bool = True) -> list[ComponentHealth]:
    """Check git, registry, Docker and the artifact store; fail when a required part is down.

    Args:
        include_optional: Also fail when an optional part (the Docker engine) is down.
    """
    logger = get_run_logger()
    results = _probe()
    create_table_artifact(
        key="platform-health",
        table=[
            {"component": r.name, "where": r.url, "healthy": r.healthy, "detail": r.detail}
            for r in results
        ],
        description="Health of every system Slipway is configured to use.",
    )
    broken = [r for r in results if not r.healthy and (r.required or include_optional)]
    for r in results:
        log = logger.info if r.healthy else logger.error
        log("%s at %s: %s", r.name, r.url, r.detail)
    if broken:
        names = ", ".join(r.name for r in broken)
        raise ComponentError(f"unhealthy: {names}", hint="; ".join(r.detail for r in broken))
    return results
