"""The Docker engine of the deploy target.

Every flow that needs Docker gets its client from `docker_client`, so a
missing or stopped engine fails each of them with the same message that
`slipway up` and `slipway status` print.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.errors import DockerUnavailable
from slipway.health import ComponentHealth

if TYPE_CHECKING:
    import docker

    from blocks.deploy_target import DeployTarget

__all__ = ["DOCKER_HINT", "check_docker", "docker_client"]

DOCKER_HINT = (
    "install the engine (`apt-get install docker.io`) and start it "
    "(`systemctl start docker`, or `dockerd --bridge=none --iptables=false &` without systemd), "
    "or point the slipway-deploy-target block at a running engine"
)


def docker_client(target: DeployTarget, *, timeout: float = 60) -> docker.DockerClient:
    """A client of the target's engine, known to answer.

    Raises:
        DockerUnavailable: the engine is not installed, not running or refuses us.
    """
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=target.docker_host, timeout=int(timeout))
        client.ping()
    except DockerException as e:
        raise DockerUnavailable(
            f"the Docker engine at {target.docker_host} is not reachable ({_cause(e)})",
            hint=DOCKER_HINT,
        ) from e
    return client


def check_docker(target: DeployTarget) -> ComponentHealth:
    """The engine's health, as `slipway status` shows it; Docker is optional for `up`."""
    try:
        client = docker_client(target, timeout=5)
    except DockerUnavailable as e:
        return ComponentHealth("docker", target.docker_host, False, str(e), required=False)
    try:
        version = client.version().get("Version", "unknown")
    finally:
        client.close()
    return ComponentHealth("docker", target.docker_host, True, f"engine {version}", required=False)


def _cause(error: Exception) -> str:
    """The innermost reason, e.g. 'No such file or directory' for a missing socket."""
    text = str(error)
    for marker in ("FileNotFoundError", "ConnectionRefusedError", "PermissionError"):
        if marker in text:
            return marker.replace("Error", "").replace("FileNotFound", "socket not found")
    return text.splitlines()[0][:160] if text else type(error).__name__
