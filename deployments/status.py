"""`slipway status`: every component of a running `slipway up`, with URL and health."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx

from deployments.state import UpState, read_state
from slipway.api_auth import http_auth
from slipway.background import import_before_threads
from slipway.health import ComponentHealth, http_health, http_probe
from slipway.home import HOST, SlipwayHome
from tasks.registry import check_registry

__all__ = [
    "bridge_health",
    "collect_status",
    "configured_systems",
    "format_table",
    "registered_deployments",
    "verdict",
]

# `slipway status` never shows a secret: the state file holds the database URL
# with its password hidden (see `UpState.database`), and that is all it reads.


def registered_deployments(api_url: str, names: set[str]) -> set[str]:
    """Which of ``names`` the Prefect server knows as deployments."""
    try:
        response = httpx.post(
            f"{api_url}/deployments/filter",
            json={"deployments": {"name": {"any_": sorted(names)}}, "limit": 200},
            timeout=2.0,
            auth=http_auth(),
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return set()
    return {d["name"] for d in response.json()}


def collect_status(
    home: SlipwayHome, configured: list[ComponentHealth] | None = None
) -> list[ComponentHealth]:
    """Probe the processes of `up` and the systems the blocks point at.

    Args:
        home: The home of the running `up`.
        configured: The systems' health (`configured_systems`) as probed
            already; `up` probes them while its components start.
    """
    state = read_state(home)
    if state is None:
        return [
            ComponentHealth(
                "slipway", str(home.root), False, "not running; start it with `slipway up`"
            )
        ]
    if state.role == "worker":
        return _worker_host(state)
    ports = state.port_config()
    prefect = f"http://{HOST}:{ports.prefect}"
    server = http_health("prefect", prefect, f"{prefect}/api/health")
    if state.database is not None and server.healthy:
        kind = "PostgreSQL" if state.database.startswith("postgresql") else "SQLite"
        server = replace(server, detail=f"{server.detail}, on {kind} {state.database}")
    docs = f"http://{HOST}:{ports.docs}"
    local_registry = f"{HOST}:{ports.registry}"
    probes: dict[str, Callable[[], list[ComponentHealth]]] = {
        "deployments": lambda: (
            [_deployments(home, state)] if state.role == "embedded" else _pool(home, state)
        ),
        "docs": lambda: [http_health("docs", docs, f"{docs}/healthz")],
        "bridge": lambda: [bridge_health(f"http://{HOST}:{ports.bridge}")],
        "registry": lambda: [_registry(state, local_registry)],
        "monitoring": lambda: _monitoring(home, state),
    }
    if configured is not None:
        probes["systems"] = lambda: configured
    elif server.healthy:
        probes["systems"] = lambda: configured_systems(local_registry)
    # One probe imports ``blocks``, another ``blocks.container_registry``.
    import_before_threads("blocks")

    # Side by side: `up` prints this table before its ready line.
    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="status") as pool:
        found = pool.map(lambda named: _probe(*named), probes.items())
        return [server, *(r for results in found for r in results)]


def _probe(name: str, probe: Callable[[], list[ComponentHealth]]) -> list[ComponentHealth]:
    """``probe``'s lines; one that failed is a line of its own, never the whole table lost."""
    try:
        return probe()
    except Exception as e:
        detail = f"could not be checked: {type(e).__name__}: {e}"
        return [ComponentHealth(name, "-", False, detail)]


def _registry(state: UpState, local_registry: str) -> ComponentHealth:
    if any(c.name == "registry" for c in state.children):
        from blocks.container_registry import ContainerRegistry

        return check_registry(ContainerRegistry(url=local_registry))
    from deployments.components import REGISTRY_HINT

    return ComponentHealth(
        "registry",
        local_registry,
        False,
        f"`docker-registry` is not installed. Fix: {REGISTRY_HINT}",
    )


def _monitoring(home: SlipwayHome, state: UpState) -> list[ComponentHealth]:
    from deployments.monitoring import monitoring_health

    return monitoring_health(home, state.port_config(), {c.name for c in state.children})


def bridge_health(bridge: str) -> ComponentHealth:
    """The bridge, with its queue: how many pushes wait, how old the oldest is, how many failed.

    One request: its answer is both the health and the queue, so a slow
    second request can no longer drop the queue from a healthy line.
    """
    found, response = http_probe("bridge", f"{bridge}/hooks/", f"{bridge}/healthz")
    if not found.healthy or response is None:
        return found
    try:
        queue = response.json()["queue"]
        detail = f"{int(queue['waiting'])} push(es) waiting"
    except (ValueError, KeyError, TypeError) as e:
        return replace(found, detail=f"{found.detail}, its queue is not readable ({e!r})")
    oldest = queue.get("oldest_seconds")
    detail += f" (oldest {oldest:.0f} s)" if oldest is not None else ""
    detail += f", {queue['failed']} failed" if queue.get("failed") else ""
    if queue.get("stalled"):
        return replace(
            found,
            healthy=False,
            detail=f"{detail}: the queue is not draining; check Prefect and logs/bridge.log",
        )
    return replace(found, detail=f"{found.detail}, {detail}")


def _deployments(home: SlipwayHome, state: UpState) -> ComponentHealth:
    from deployments.serve import declared_deployments

    child = next((c for c in state.children if c.name == "deployments"), None)
    url = f"http://{HOST}:{state.ports['prefect']}/deployments"
    registering = _registering(home, state, url)
    if child is None or not _alive(child.pid):
        if registering is not None and not registering.healthy:
            return registering  # the cause it failed with, rather than "not running"
        return ComponentHealth("deployments", url, False, "the deployment runner is not running")
    if registering is not None:
        return registering
    wanted = {d.name for d in declared_deployments(Path(state.project_dir))}
    found = registered_deployments(f"http://{HOST}:{state.ports['prefect']}/api", wanted)
    missing = sorted(wanted - found)
    if missing:
        return ComponentHealth(
            "deployments", url, False, f"not registered yet: {', '.join(missing)}"
        )
    return ComponentHealth("deployments", url, True, f"{len(found)} served")


def _registering(home: SlipwayHome, state: UpState, url: str) -> ComponentHealth | None:
    """While this `up` registers its deployments, or after that failed; None once registered.

    `up` is ready before registration ends (`deployments.startup`); until then
    runs of the missing deployments cannot start and pushes wait in the bridge.
    """
    from deployments.startup import read_registration

    found = read_registration(home, state.marker)
    if found is None or found.state == "registered":
        return None
    if found.state == "failed":
        return ComponentHealth(
            "deployments", url, False, f"registration FAILED: {found.error} Fix: {found.hint}"
        )
    if found.last_error is not None:
        return ComponentHealth(
            "deployments",
            url,
            False,
            f"registering again ({found.done} of {found.total}); the last attempt FAILED: "
            f"{found.last_error}",
        )
    return ComponentHealth(
        "deployments",
        url,
        False,
        f"registering: {found.done} of {found.total} after {found.seconds():.0f} s "
        "(pushes wait in the bridge until all are registered)",
        starting=True,
    )


def _pool(home: SlipwayHome, state: UpState) -> list[ComponentHealth]:
    """A server host: its deployments in the pool, the workers online, this host's own worker."""
    from deployments.pool import online_workers
    from deployments.serve import declared_deployments

    api = state.prefect_api_url()
    ui = api.removesuffix("/api")
    wanted = {d.name for d in declared_deployments(Path(state.project_dir))}
    registering = _registering(home, state, f"{ui}/deployments")
    missing = sorted(wanted - registered_deployments(api, wanted))
    results = [
        registering
        or ComponentHealth(
            "deployments",
            f"{ui}/deployments",
            not missing,
            f"not in the work pool: {', '.join(missing)}"
            if missing
            else f"{len(wanted)} in the work pool",
        )
    ]
    pool = state.pool or "slipway"
    online = sorted(online_workers(api, pool))
    results.append(
        ComponentHealth(
            "workers",
            f"{ui}/work-pools/work-pool/{pool}",
            bool(online),
            f"{len(online)} online: {', '.join(online)}"
            if online
            else "none online, so no flow runs; start one per host with "
            f"`slipway up --role worker --server {state.public_url or ui}`",
        )
    )
    if state.role == "all":
        results.append(_own_worker(state))
    return results


def _own_worker(state: UpState) -> ComponentHealth:
    from deployments.pool import online_workers

    api = state.prefect_api_url()
    pool = state.pool or "slipway"
    url = f"{api.removesuffix('/api')}/work-pools/work-pool/{pool}"
    child = next((c for c in state.children if c.name == "worker"), None)
    if child is None or not _alive(child.pid):
        return ComponentHealth("worker", url, False, "the worker process is not running")
    if state.worker_name not in online_workers(api, pool):
        return ComponentHealth(
            "worker", url, False, f"{state.worker_name} runs but the server lists it offline"
        )
    return ComponentHealth("worker", url, True, f"{state.worker_name} online, polling {pool}")


def _worker_host(state: UpState) -> list[ComponentHealth]:
    """A worker host: the remote server, its own worker and the systems its flows use."""
    api = state.prefect_api_url()
    results = [http_health("server", api.removesuffix("/api"), f"{api}/health")]
    results.append(_own_worker(state))
    if results[0].healthy:
        results.extend(configured_systems(""))
    return results


def configured_systems(local_registry: str) -> list[ComponentHealth]:
    """Git, Docker, artifacts (and a registry other than ``local_registry``) as the blocks configure them.

    Then the services' base image, which builds need in the deploy target's engine.
    """
    from blocks import Defaults, DeployTarget, PlatformSettings
    from tasks.base_image import check_base_image
    from tasks.platform_health import probe_configured_systems

    results = [
        r
        for r in probe_configured_systems()
        if not (r.name == "registry" and r.url == local_registry)
    ]
    blocks = Defaults(DeployTarget, PlatformSettings)
    results.append(check_base_image(blocks[DeployTarget], blocks[PlatformSettings].base_image))
    return results


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
        word = "healthy" if r.healthy else "starting" if r.starting else "UNHEALTHY"
        word = "unavailable" if not (r.healthy or r.starting or r.required) else word
        lines.append(f"  {r.name:<12} {r.url:<{width}}  {word:<11} {r.detail}")
    return "\n".join(lines)


def verdict(results: list[ComponentHealth]) -> str:
    """``all healthy``, or which parts are not: what `slipway up` ends its ready line with.

    A part that is still starting (deployments registering) is named, but not as a failure.
    """
    unhealthy = [r.name for r in results if not r.healthy and not r.starting and r.required]
    unavailable = [r.name for r in results if not r.healthy and not r.required]
    starting = [r.name for r in results if r.starting]
    later = f"; still starting: {', '.join(starting)}" if starting else ""
    if not unhealthy and not unavailable:
        return f"all healthy{later}"
    parts = [f"UNHEALTHY: {', '.join(unhealthy)}"] if unhealthy else []
    parts += [f"unavailable: {', '.join(unavailable)}"] if unavailable else []
    return "; ".join(parts) + later + " (see the table above for each fix)"
