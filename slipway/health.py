"""How every part of the platform reports whether it works.

`slipway status`, `slipway up` and the ``check_platform`` flow all speak this
one type, so a component looks the same wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slipway.http import shared_client

if TYPE_CHECKING:
    import httpx

__all__ = ["ComponentHealth", "http_health", "http_probe"]


@dataclass(frozen=True)
class ComponentHealth:
    """One component's state at the moment it was probed."""

    name: str
    """Short name, e.g. ``prefect`` or ``registry``."""
    url: str
    """Where it is reached: a URL, a socket or a directory."""
    healthy: bool
    """Whether it does its job right now."""
    detail: str = ""
    """What was seen; for an unhealthy part, the cause and the fix."""
    required: bool = True
    """Whether the platform is degraded without it (Docker is optional for `up`)."""
    starting: bool = False
    """Not healthy yet, but on its way (deployments registering after a start): not a failure."""


def http_health(
    name: str,
    url: str,
    probe: str,
    *,
    timeout: float = 2.0,
    auth: tuple[str, str] | None = None,
) -> ComponentHealth:
    """Probe ``probe`` with GET; any 2xx answer is healthy.

    Args:
        name: The component's name.
        url: The address shown to users.
        probe: The URL that is requested.
        timeout: Seconds before the component counts as not answering.
        auth: User and password for a probe that must log in.
    """
    return http_probe(name, url, probe, timeout=timeout, auth=auth)[0]


def http_probe(
    name: str,
    url: str,
    probe: str,
    *,
    timeout: float = 2.0,
    auth: tuple[str, str] | None = None,
) -> tuple[ComponentHealth, httpx.Response | None]:
    """`http_health`, with the answer itself for a caller that reads its body; None if none came."""
    import httpx  # here: `slipway up` imports this module before Prefect's server starts

    try:
        response = shared_client().get(probe, timeout=timeout, auth=auth)
    except httpx.HTTPError as e:
        return ComponentHealth(name, url, False, f"not answering ({type(e).__name__})"), None
    if response.is_success:
        return ComponentHealth(name, url, True, f"HTTP {response.status_code}"), response
    return ComponentHealth(name, url, False, f"HTTP {response.status_code} from {probe}"), response
