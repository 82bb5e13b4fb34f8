"""The OCI registry that built images are pushed to and deployed from."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from blocks.base import SlipwayBlock
from slipway.home import HOST, Ports, SlipwayHome
from slipway.names import check_host_port

__all__ = ["LOCAL_REGISTRY_USER", "ContainerRegistry"]

LOCAL_REGISTRY_USER = "slipway"
"""The user of the login that `slipway up` generates for its local registry."""


class ContainerRegistry(SlipwayBlock):
    """An OCI registry: the local one from `slipway up`, or any other.

    Images are tagged ``<url>/<service>:<sha>``. The local registry requires
    the login kept here; `slipway up` writes its htpasswd from this block.

    Example:
        ```python
        from blocks import ContainerRegistry
        registry = ContainerRegistry.load("default")
        ```
    """

    _block_type_name = "Slipway Container Registry"
    _block_type_slug = "slipway-container-registry"

    url: str = Field(
        default=f"{HOST}:5001",
        title="Registry",
        description="host[:port][/namespace], without a scheme, e.g. 127.0.0.1:5001 or ghcr.io/acme.",
    )
    username: str | None = Field(
        default=None, title="Username", description="Empty for a registry without login."
    )
    password: SecretStr | None = Field(
        default=None, title="Password", description="Password or token for `username`."
    )

    @field_validator("url")
    @classmethod
    def _url_is_host_port(cls, value: str) -> str:
        return check_host_port(value, what="url")

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password`, or neither")
        return self

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """The registry that `slipway up` runs on loopback, with a generated login it requires."""
        import secrets

        password = SecretStr(secrets.token_urlsafe(24))
        return cls(url=f"{HOST}:{ports.registry}", username=LOCAL_REGISTRY_USER, password=password)
