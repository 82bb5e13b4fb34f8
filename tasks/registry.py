"""The OCI registry that images are pushed to and pulled from.

The platform's registry requires a login (the ``slipway-container-registry``
block's ``username`` and ``password``). `login_registry` hands it to a Docker
engine client once, and every push and pull of that client then carries it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError
from slipway.health import ComponentHealth, http_health

if TYPE_CHECKING:
    import docker

    from blocks.container_registry import ContainerRegistry

__all__ = ["check_registry", "login_registry", "registry_api_url", "registry_host"]

_BLOCK = "slipway-container-registry/default"


def registry_host(registry: ContainerRegistry) -> str:
    """``host[:port]`` of the registry, without a namespace: what a login is for."""
    return registry.url.split("/", 1)[0]


def registry_api_url(registry: ContainerRegistry) -> str:
    """The registry's HTTP API root; loopback registries speak plain HTTP."""
    host = registry_host(registry)
    scheme = "http" if host.startswith(("127.", "localhost")) else "https"
    return f"{scheme}://{host}/v2/"


def check_registry(registry: ContainerRegistry) -> ComponentHealth:
    """Whether the registry answers its API root, and takes the block's login when it has one.

    Without credentials a 401 counts as healthy (the registry is there and
    asks for a login); with them it means the block's password is wrong.
    """
    api = registry_api_url(registry)
    login = _login(registry)
    health = http_health("registry", registry.url, api, auth=login)
    if health.healthy or "HTTP 401" not in health.detail:
        return health
    if login is None:
        return ComponentHealth("registry", registry.url, True, "answers; login required")
    return ComponentHealth(
        "registry",
        registry.url,
        False,
        f"refuses the login of {login[0]!r} from {_BLOCK}; give the block the registry's "
        "password (for the local registry, restart `slipway up`: it rewrites the registry's "
        "htpasswd from the block)",
    )


def login_registry(client: docker.DockerClient, registry: ContainerRegistry) -> None:
    """Log ``client`` in to the registry, so its pushes and pulls carry the block's credentials.

    A registry without credentials in the block needs no login: nothing happens.

    Raises:
        ConfigurationError: the registry refuses the credentials, or cannot be reached.
    """
    from docker.errors import DockerException

    login = _login(registry)
    if login is None:
        return
    try:
        client.login(username=login[0], password=login[1], registry=registry_host(registry))
    except DockerException as e:
        raise ConfigurationError(
            f"the registry {registry.url} refused the login of {login[0]!r}: "
            f"{str(e).splitlines()[0][:200]}",
            hint=f"check that it runs (`slipway status`) and that {_BLOCK} holds its password",
        ) from e


def _login(registry: ContainerRegistry) -> tuple[str, str] | None:
    if registry.username is None or registry.password is None:
        return None
    return registry.username, registry.password.get_secret_value()
