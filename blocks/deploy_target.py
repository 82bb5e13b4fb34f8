"""The Docker host that services are deployed to, and how its containers are confined."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from blocks.base import SlipwayBlock
from slipway.home import HOST, Ports, SlipwayHome

__all__ = ["DeployTarget"]

_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")
_SIZE = re.compile(r"[1-9][0-9]*[bkmg]?")
_USER = re.compile(r"[1-9][0-9]*(:[0-9]+)?")
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class DeployTarget(SlipwayBlock):
    """A Docker engine, the port range services are given on it, and their confinement.

    Every container the platform starts for a service (its tests, a
    candidate, a release, a drift repair) runs as `run_as_user` unless its
    image names another non-root uid, with every capability dropped,
    ``no-new-privileges``, a read-only root filesystem with a private
    ``/tmp``, and the memory, CPU and process limits below.

    Example:
        ```python
        from blocks import DeployTarget
        target = DeployTarget.load("default")
        ```
    """

    _block_type_name = "Slipway Deploy Target"
    _block_type_slug = "slipway-deploy-target"

    docker_host: str = Field(
        default="unix:///var/run/docker.sock",
        title="Docker host",
        description="Engine URL as DOCKER_HOST takes it: unix://, tcp:// or ssh://.",
    )
    bind_address: str = Field(
        default=HOST,
        title="Bind address",
        description="Address that services listen on; loopback keeps them private.",
    )
    network_mode: Literal["host", "bridge"] = Field(
        default="host",
        title="Network mode",
        description="'host' runs containers in the host's network; 'bridge' publishes the port.",
    )
    port_range_start: int = Field(
        default=8100, title="First port", description="Lowest port a service may be given."
    )
    port_range_end: int = Field(
        default=8199, title="Last port", description="Highest port a service may be given."
    )
    run_as_user: str = Field(
        default="65534:65534",
        title="Run as user",
        description="uid[:gid] for containers whose image names no user; never 0 (root).",
    )
    memory_limit: str = Field(
        default="512m",
        title="Memory limit",
        description="Memory per container, as Docker writes it (e.g. 512m, 1g); no swap beyond it.",
    )
    cpu_limit: float = Field(
        default=1.0, gt=0, le=64, title="CPU limit", description="CPU cores per container."
    )
    pids_limit: int = Field(
        default=256,
        ge=16,
        le=65536,
        title="Process limit",
        description="Processes and threads per container; stops a fork bomb.",
    )
    tmp_size: str = Field(
        default="64m",
        title="Size of /tmp",
        description="The writable tmpfs at /tmp; the rest of a container's filesystem is read-only.",
    )
    build_network: str = Field(
        default="none",
        title="Build network",
        description="The network of RUN steps: 'none' (dependencies come from the wheelhouse) "
        "or a named Docker network made for builds; never 'host'.",
    )
    package_index: str | None = Field(
        default=None,
        title="Package index",
        description="Where the wheelhouse is downloaded from (a PyPI mirror's simple index); "
        "empty uses pip's own configuration.",
    )

    @field_validator("docker_host")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(_SCHEMES):
            raise ValueError(f"docker_host {value!r} must start with one of {', '.join(_SCHEMES)}")
        return value

    @field_validator("run_as_user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if not _USER.fullmatch(value):
            raise ValueError(
                f"run_as_user {value!r} must be a non-root numeric uid[:gid], e.g. 65534:65534"
            )
        return value

    @field_validator("memory_limit", "tmp_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.fullmatch(value.lower()):
            raise ValueError(f"{value!r} is not a size such as 512m or 1g")
        return value.lower()

    @field_validator("build_network")
    @classmethod
    def _build_network(cls, value: str) -> str:
        if value in ("host", "default", "bridge") or not _NETWORK.fullmatch(value):
            raise ValueError(
                f"build_network {value!r} would let RUN steps reach the platform; use 'none' "
                "or the name of a network made for builds"
            )
        return value

    @field_validator("package_index")
    @classmethod
    def _index_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"package_index {value!r} must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _range_is_sane(self) -> Self:
        start, end = self.port_range_start, self.port_range_end
        if not 1024 <= start <= end <= 65535:
            raise ValueError(
                f"port range {start}-{end} must satisfy 1024 <= first port <= last port <= 65535"
            )
        return self

    def port_in_range(self, port: int) -> bool:
        """Whether ``port`` may be given to a service on this target."""
        return self.port_range_start <= port <= self.port_range_end

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """The engine on this machine's default socket."""
        return cls()
