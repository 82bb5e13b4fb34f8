"""Is the platform able to do its job? One flow run answers for every part.

It checks the systems the platform's configuration blocks point at: the git
server, the registry, the deploy target's Docker engine and the artifact
store (`tasks.platform_health`). `slipway status` shows the same checks
beside the processes of `up`.
"""

from __future__ import annotations

from prefect import flow

from slipway.health import ComponentHealth
from tasks.platform_health import probe_platform, report_platform_health

__all__ = ["check_platform"]


@flow(name="platform-check", log_prints=False)
def check_platform(include_optional: bool = True) -> list[ComponentHealth]:
    """Check git, registry, Docker and the artifact store; fail when a required part is down.

    Args:
        include_optional: Also fail when an optional part (the Docker engine) is down.
    """
    return report_platform_health(probe_platform(), include_optional=include_optional)
