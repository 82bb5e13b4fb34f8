"""How every part of the platform reports whether it works.

`slipway status`, `slipway up` and the ``check_platform`` flow all speak this
one type, so a component looks the same wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

__all__ = ["ComponentHealth", "http_health"]


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
    try:
        response = httpx.get(probe, timeout=timeout, auth=auth)
    except httpx.HTTPError as e:
        return ComponentHealth(name, url, False, f"not answering ({type(e).__name__})")
    if response.is_success:
        return ComponentHealth(name, url, True, f"HTTP {response.status_code}")
    return ComponentHealth(name, url, False, f"HTTP {response.status_code} from {probe}")
