"""The OCI registry that images are pushed to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.health import ComponentHealth, http_health

if TYPE_CHECKING:
    from blocks.container_registry import ContainerRegistry

__all__ = ["check_registry", "registry_api_url"]


def registry_api_url(registry: ContainerRegistry) -> str:
    """The registry's HTTP API root; loopback registries speak plain HTTP."""
    host = registry.url.split("/", 1)[0]
    scheme = "http" if host.startswith(("127.", "localhost")) else "https"
    return f"{scheme}://{host}/v2/"


def check_registry(registry: ContainerRegistry) -> ComponentHealth:
    """Whether the registry answers its API root (401 counts: it asks for login)."""
    api = registry_api_url(registry)
    health = http_health("registry", registry.url, api)
    if not health.healthy and "HTTP 401" in health.detail:
        return ComponentHealth("registry", registry.url, True, "answers; login required")
    return health
