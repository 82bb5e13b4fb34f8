"""The Docker engine of the deploy target, and how every service container on it is confined.

Every flow that needs Docker gets its client from `docker_client`, so a
missing or stopped engine fails each of them with the same message that
`slipway up` and `slipway status` print.

Every container the platform starts for a service (its tests, a candidate,
a release, a drift repair) gets its options from `confinement`: a service's
image is untrusted, so it runs as a non-root user whatever its Dockerfile
says, with every capability dropped, ``no-new-privileges``, a read-only root
filesystem with a small writable ``/tmp``, the deploy target's memory, CPU
and process limits, no mount of the host (the Docker socket least of all)
and only the environment its caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slipway.errors import DockerUnavailable, InvalidRequest
from slipway.health import ComponentHealth

if TYPE_CHECKING:
    import docker

    from blocks.deploy_target import DeployTarget

__all__ = [
    "DOCKER_HINT",
    "LOG_CONFIG",
    "Confinement",
    "check_docker",
    "confinement",
    "docker_client",
    "is_confined",
]

_NUMERIC_USER = re.compile(r"(?P<uid>[0-9]+)(?::(?P<gid>[0-9]+))?")
_ROOT_HINT = (
    "remove `USER root` from the Dockerfile: the platform runs every container as a non-root "
    "user; name a numeric one if the image needs its own (USER 10001), and keep files the "
    "service writes under /tmp, the only writable path"
)

LOG_CONFIG: dict[str, Any] = {"type": "local", "config": {"max-size": "10m", "max-file": "3"}}
"""``log_config=`` of every container the platform starts: the engine's ``local``
driver rotates each log at 10 MB and keeps three files, compressed; ``docker logs``
and `slipway logs` read them."""

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


@dataclass(frozen=True)
class Confinement:
    """How one container of a service runs; `options` are docker-py's ``run``/``create`` keywords."""

    user: str
    """``uid[:gid]``, never 0."""
    network_mode: str
    """``none`` for tests; the deploy target's mode (``host``, bound to loopback) for services."""
    memory: str
    """Memory and memory+swap limit, e.g. ``512m``."""
    nano_cpus: int
    """CPU limit in billionths of a core."""
    pids: int
    """Processes and threads."""
    tmp_size: str
    """Size of the writable ``/tmp``."""

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.run`` or ``create``."""
        return {
            "user": self.user,
            "network_mode": self.network_mode,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "privileged": False,
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={self.tmp_size}"},  # noqa: S108 - the container's own
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "nano_cpus": self.nano_cpus,
            "pids_limit": self.pids,
        }


def confinement(
    client: docker.DockerClient,
    image: str,
    target: DeployTarget,
    *,
    network_mode: str | None = None,
) -> Confinement:
    """The confinement of a container of ``image`` on ``target``.

    It runs as the uid the image names, when that is a number other than 0,
    and otherwise as the target's `run_as_user`. An image that names root,
    or a user by name (which could be root: only the image's own
    ``/etc/passwd`` knows), is refused, as Kubernetes' ``runAsNonRoot`` does.

    Args:
        client: The deploy target's engine, which holds ``image``.
        image: The image's id, tag or ``repo@sha256:...``.
        target: The deploy target: default user and limits.
        network_mode: Overrides the target's (tests run with ``none``).

    Raises:
        InvalidRequest: the image asks for root; says how to fix the Dockerfile.
        DockerUnavailable: the engine cannot inspect the image.
    """
    from docker.errors import DockerException

    try:
        named = str((client.images.get(image).attrs.get("Config") or {}).get("User") or "")
    except DockerException as e:
        raise DockerUnavailable(f"the engine could not inspect {image}: {e}") from e
    return Confinement(
        user=_run_as(named.strip(), target.run_as_user, image),
        network_mode=network_mode or target.network_mode,
        memory=target.memory_limit,
        nano_cpus=int(target.cpu_limit * 1_000_000_000),
        pids=target.pids_limit,
        tmp_size=target.tmp_size,
    )


def _run_as(named: str, default: str, image: str) -> str:
    """The user a container of ``image`` runs as; refuses root and unverifiable names."""
    if not named:
        return default
    numeric = _NUMERIC_USER.fullmatch(named)
    if numeric is not None and int(numeric["uid"]) != 0:
        return named
    if numeric is not None or named.partition(":")[0] == "root":
        raise InvalidRequest(f"{image} runs as root (USER {named})", hint=_ROOT_HINT)
    raise InvalidRequest(
        f"{image} names its user {named!r}, which the platform cannot verify is not root",
        hint="name a numeric non-root uid in the Dockerfile instead, e.g. USER 10001",
    )


def is_confined(attrs: Mapping[str, Any]) -> bool:
    """Whether a container (its ``inspect`` attributes) runs as `confinement` starts one.

    Read back from the engine, so a container started before confinement,
    or by hand, shows up as drift.
    """
    host: Mapping[str, Any] = attrs.get("HostConfig") or {}
    user = str((attrs.get("Config") or {}).get("User") or "")
    numeric = _NUMERIC_USER.fullmatch(user)
    mounts = [str(m.get("Source", "")) for m in attrs.get("Mounts") or []]
    return bool(
        numeric is not None
        and int(numeric["uid"]) != 0
        and host.get("ReadonlyRootfs")
        and "ALL" in (host.get("CapDrop") or [])
        and any(o.startswith("no-new-privileges") for o in host.get("SecurityOpt") or [])
        and not host.get("Privileged")
        and (host.get("Memory") or 0) > 0
        and (host.get("NanoCpus") or 0) > 0
        and (host.get("PidsLimit") or 0) > 0
        and not any(m.endswith("docker.sock") for m in mounts)
    )
