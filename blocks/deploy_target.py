"""The Docker host that services are deployed to."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from blocks.base import SlipwayBlock
from slipway.home import HOST, Ports, SlipwayHome

__all__ = ["DeployTarget"]

_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


class DeployTarget(SlipwayBlock):
    """A Docker engine and the port range that services are given on it.

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

    @field_validator("docker_host")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(_SCHEMES):
            raise ValueError(f"docker_host {value!r} must start with one of {', '.join(_SCHEMES)}")
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
