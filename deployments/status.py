"""`slipway status`: every component of a running `slipway up`, with URL and health."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from deployments.state import UpState, read_state
from slipway.health import ComponentHealth, http_health
from slipway.home import HOST, SlipwayHome

__all__ = ["collect_status", "format_table", "registered_deployments"]


def registered_deployments(api_url: str, names: set[str]) -> set[str]:
    """Which of ``names`` the Prefect server knows as deployments."""
    try:
        response = httpx.post(
            f"{api_url}/deployments/filter",
            json={"deployments": {"name": {"any_": sorted(names)}}, "limit": 200},
            timeout=2.0,
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return set()
    return {d["name"] for d in response.json()}


def collect_status(home: SlipwayHome) -> list[ComponentHealth]:
    """Probe the processes of `up` and the systems the blocks point at."""
    state = read_state(home)
    if state is None:
        return [
            ComponentHealth(
                "slipway", str(home.root), False, "not running; start it with `slipway up`"
            )
        ]
    ports = state.port_config()
    prefect = f"http://{HOST}:{ports.prefect}"
    results = [http_health("prefect", prefect, f"{prefect}/api/health")]
    results.append(_deployments(state))
    results.append(
        http_health("docs", f"http://{HOST}:{ports.docs}", f"http://{HOST}:{ports.docs}/healthz")
    )
    bridge = f"http://{HOST}:{ports.bridge}"
    results.append(http_health("bridge", f"{bridge}/hooks/", f"{bridge}/healthz"))
    local_registry = f"{HOST}:{ports.registry}"
    if any(c.name == "registry" for c in state.children):
        results.append(http_health("registry", local_registry, f"http://{local_registry}/v2/"))
    else:
        from deployments.components import REGISTRY_HINT

        results.append(
            ComponentHealth(
                "registry",
                local_registry,
                False,
                f"`docker-registry` is not installed. Fix: {REGISTRY_HINT}",
            )
        )
    if results[0].healthy:
        results.extend(_configured_systems(local_registry))
    return results


def _deployments(state: UpState) -> ComponentHealth:
    from deployments.serve import declared_deployments

    child = next((c for c in state.children if c.name == "deployments"), None)
    url = f"http://{HOST}:{state.ports['prefect']}/deployments"
    if child is None or not _alive(child.pid):
        return ComponentHealth("deployments", url, False, "the deployment runner is not running")
    wanted = {d.name for d in declared_deployments(Path(state.project_dir))}
    found = registered_deployments(f"http://{HOST}:{state.ports['prefect']}/api", wanted)
    missing = sorted(wanted - found)
    if missing:
        return ComponentHealth(
            "deployments", url, False, f"not registered yet: {', '.join(missing)}"
        )
    return ComponentHealth("deployments", url, True, f"{len(found)} served")


def _configured_systems(local_registry: str) -> list[ComponentHealth]:
    """Git, Docker, artifacts (and a non-local registry) as the blocks configure them."""
    from flows.platform_check import probe_configured_systems

    return [
        r
        for r in probe_configured_systems()
        if not (r.name == "registry" and r.url == local_registry)
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_table(results: list[ComponentHealth]) -> str:
    """One line per component: name, where, health and detail."""
    width = max(len(r.url) for r in results)
    lines = []
    for r in results:
        word = "healthy" if r.healthy else ("unavailable" if not r.required else "UNHEALTHY")
        lines.append(f"  {r.name:<12} {r.url:<{width}}  {word:<11} {r.detail}")
    return "\n".join(lines)
