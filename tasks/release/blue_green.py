"""Blue-green releases of service images on the deploy target's Docker engine.

Containers use the host's network, and two processes cannot bind one port, so
the new version is proven on a spare port first: a *candidate*
(``live=false``) starts on a free port of the deploy target's range and must
answer ``/healthz`` within the health timeout. Only then is the switch made:
the old container stops, and the new one starts on the service's port and
must answer there too. The candidate is removed after the switch, which
its removal would otherwise delay.

- A candidate that fails its health check is removed and the old container
  was never touched: it keeps serving, without one failed request.
- The switch itself costs the new container's start time (typically well
  under a second) during which connections are refused. Should the new
  container then not answer on the real port, it is removed and the old one
  started again.

Every container follows the contract of `tasks.release.contract`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.errors import ConfigurationError, DeployError, InvalidRequest
from slipway.run_log import run_logger
from tasks.containers import LOG_CONFIG, confinement
from tasks.images import ensure_image
from tasks.release.contract import (
    LABEL_ENVIRONMENT,
    LABEL_IMAGE,
    LABEL_LIVE,
    LABEL_PORT,
    LABEL_SERVICE,
    LABEL_SHA,
    Release,
    container_environment,
    container_name,
    health_url,
    release_containers,
    service_url,
)
from tasks.release.health import wait_healthy
from tasks.release.ports import first_claim, port_free, spare_port

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget

__all__ = ["Deployed", "deploy_release"]

_STOP_SECONDS = 10


@dataclass(frozen=True)
class Deployed:
    """A release that answers ``/healthz`` on its port."""

    container: str
    """The serving container's name."""
    url: str
    """Where the service answers, e.g. ``http://127.0.0.1:8101/``."""
    seconds: float
    """From the first container start to the switch being done."""
    switch_seconds: float
    """How long connections were refused during the switch; 0 for a first deploy."""
    replaced: str | None
    """The name of the container it replaced, if any."""


@task(name="deploy-blue-green", cache_policy=NO_CACHE)
def deploy_release(
    client: docker.DockerClient,
    release: Release,
    *,
    target: DeployTarget,
    health_timeout: float,
    reserved_ports: frozenset[int] = frozenset(),
) -> Deployed:
    """Run ``release`` beside the serving container, then switch to it once healthy.

    Args:
        client: The deploy target's engine.
        release: What to run.
        target: The deploy target: bind address and the range spare ports come from.
        health_timeout: Seconds each container may take to answer ``/healthz``.
        reserved_ports: Ports that must not be used as spare ports (other services').

    Raises:
        DeployError: The new version did not become healthy; the old one still serves.
    """
    if target.network_mode != "host":
        raise ConfigurationError(
            f"deploy target network mode {target.network_mode!r} is not supported for releases",
            hint="set the slipway-deploy-target block's network mode to 'host'",
        )
    from docker.errors import DockerException

    try:
        return _deploy(client, release, target, health_timeout, reserved_ports)
    except DockerException as e:
        raise DeployError(
            f"the Docker engine failed during the release of {release.service} to "
            f"{release.environment}: {e}",
            hint="check the engine (`slipway status`), then run the release again",
        ) from e


def _deploy(
    client: docker.DockerClient,
    release: Release,
    target: DeployTarget,
    health_timeout: float,
    reserved_ports: frozenset[int],
) -> Deployed:
    ensure_image(client, release.image)
    name = container_name(release.service, release.environment, release.sha)
    mine = release_containers(client, release.service, release.environment)  # one listing
    for leftover in (c for c in mine if c.labels.get(LABEL_LIVE) == "false"):
        run_logger(__name__).warning(
            "Removing %s, a candidate left by an interrupted release", leftover.name
        )
        leftover.remove(force=True)
    previous = [c for c in mine if c.labels.get(LABEL_LIVE) == "true"]
    serving = next((c for c in previous if c.status == "running"), None)
    for stale in previous:
        if stale.name == name:  # the same commit again: free the name, keep it serving
            stale.rename(f"{name}-previous")
            stale.reload()
    began = time.monotonic()
    try:
        if serving is None:
            deployed = _first_start(client, release, name, target, health_timeout)
        else:
            deployed = _switch(
                client, release, name, serving, target, health_timeout, reserved_ports
            )
    except BaseException:
        for stale in previous:
            if stale.name == f"{name}-previous":
                stale.rename(name)
                stale.reload()
        raise
    for old in previous:
        old.remove(force=True)
    total = time.monotonic() - began
    run_logger(__name__).info("%s serves %s at %s", name, release.image, deployed.url)
    return Deployed(name, deployed.url, total, deployed.switch_seconds, deployed.replaced)


def _first_start(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    timeout: float,
) -> Deployed:
    if not port_free(target.bind_address, release.port):
        raise DeployError(
            f"port {release.port} on {target.bind_address} is taken by something that is not "
            f"a Slipway container of {release.service} in {release.environment}",
            hint=f"stop what listens there (`ss -ltnp 'sport = :{release.port}'`) or give the service another port",
        )
    container = _start(client, release, name, target, release.port, live=True)
    try:
        wait_healthy(container, health_url(target, release.port), sha=release.sha, timeout=timeout)
    except BaseException:
        container.remove(force=True)
        raise
    return Deployed(name, service_url(target, release.port), 0, 0, None)


def _switch(
    client: docker.DockerClient,
    release: Release,
    name: str,
    serving: Container,
    target: DeployTarget,
    timeout: float,
    reserved: frozenset[int],
) -> Deployed:
    candidate, spare = _claim_spare(
        client, release, f"{name}-candidate", target, reserved | {release.port}
    )
    run_logger(__name__).info(
        "Starting candidate %s on spare port %d beside %s", candidate.name, spare, serving.name
    )
    try:  # the candidate is removed after the switch, which its removal would delay
        _started(candidate, str(candidate.name))
        wait_healthy(candidate, health_url(target, spare), sha=release.sha, timeout=timeout)
        final = _create(client, release, name, target, release.port, live=True)
        switch_began = time.monotonic()
        try:
            serving.stop(timeout=_STOP_SECONDS)
            final.start()
            wait_healthy(final, health_url(target, release.port), sha=release.sha, timeout=timeout)
        except BaseException as e:
            restored = _restore(final, serving)
            run_logger(__name__).error("%s failed on port %d; %s", name, release.port, restored)
            if isinstance(e, DeployError):
                raise DeployError(
                    f"{e.message} (it was healthy on spare port {spare}; {restored})", hint=e.hint
                ) from e
            raise
    finally:
        _discard(candidate)
    switch = time.monotonic() - switch_began
    run_logger(__name__).info("Switched %s to %s in %.2f s", serving.name, name, switch)
    return Deployed(name, service_url(target, release.port), 0, switch, str(serving.name))


def _discard(container: Container) -> None:
    """Remove ``container``, which may be gone already (`_started` removes one that did not start)."""
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        container.remove(force=True)


def _restore(failed: Container, serving: Container) -> str:
    """Remove the new container and start the old one again; says how that went."""
    from docker.errors import DockerException

    try:
        failed.remove(force=True)
        serving.start()  # a no-op when it never stopped
    except DockerException as e:
        return f"{serving.name} could not be restarted ({e}): start it by hand"
    return f"{serving.name} was restarted"


def _create(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    port: int,
    *,
    live: bool,
) -> Container:
    from docker.errors import DockerException

    environment = container_environment(release, target, port)
    labels = {
        LABEL_SERVICE: release.service,
        LABEL_ENVIRONMENT: release.environment,
        LABEL_SHA: release.sha,
        LABEL_IMAGE: release.image,
        LABEL_PORT: str(port),
        LABEL_LIVE: str(live).lower(),
    }
    try:
        confined = confinement(client, release.image, target)
    except InvalidRequest as e:
        raise DeployError(f"{e.message}: it was not released", hint=e.hint) from e
    try:
        return client.containers.create(
            release.image,
            name=name,
            detach=True,
            environment=environment,
            labels=labels,
            restart_policy={"Name": "unless-stopped"} if live else {"Name": "no"},
            log_config=LOG_CONFIG,  # rotated by the engine (tasks.containers)
            **confined.options(),
        )
    except DockerException as e:
        raise DeployError(f"the engine refused to create {name}: {e}") from e


def _start(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    port: int,
    *,
    live: bool,
) -> Container:
    return _started(_create(client, release, name, target, port, live=live), name)


def _started(container: Container, name: str) -> Container:
    from docker.errors import DockerException

    try:
        container.start()
    except DockerException as e:
        container.remove(force=True)
        raise DeployError(f"{name} did not start: {e}") from e
    return container


def _claim_spare(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    reserved: frozenset[int],
) -> tuple[Container, int]:
    """The candidate, created (not started) on a spare port no concurrent release claims too.

    Two releases on one engine can pick the same free port at once. Each
    creates its candidate with the port in its label, then looks: the one
    created first keeps the port, a later one removes its candidate and picks
    again. The engine's creation order decides, so both agree.
    """
    taken = set(reserved)
    for _ in range(10):
        port = spare_port(client, target, frozenset(taken))
        candidate = _create(client, release, name, target, port, live=False)
        if first_claim(client, candidate, port):
            return candidate, port
        candidate.remove(force=True)
        taken.add(port)
    raise DeployError(
        f"no spare port for {name}: other releases claimed each one tried",
        hint="run the release again, or widen the slipway-deploy-target block's port range",
    )
