"""Blue-green releases of service images on the deploy target's Docker engine.

Containers use the host's network, and two processes cannot bind one port, so
the new version is proven on a spare port first: a *candidate*
(``live=false``) starts on a free port of the deploy target's range and must
answer ``/healthz`` within the health timeout. Only then is the switch made:
the old container stops, and the new one starts on the service's port as
soon as the old one lets it go (not once the engine has torn it down), and
must answer there too. The candidate is removed after the switch, which
its removal would otherwise delay.

- A candidate that fails its health check is removed and the old container
  was never touched: it keeps serving, without one failed request.
- The switch itself costs the new container's start time (typically well
  under a second) during which connections are refused. Should the new
  container then not answer on the real port, it is removed and the old one
  started again.
- build-test-deploy starts the candidate as soon as its image is built,
  while the image is tested and pushed (`start_trial`): the local image,
  whose pushed digest is not known yet, proven on a spare port as any
  candidate. `deploy_release` takes that
  trial as its candidate once the pushed digest names the same image (probed
  once more first), and fails as a failed candidate does when it failed.

Every container follows the contract of `tasks.release.contract`; they are
created and started by `tasks.release.candidate`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.background import in_background
from slipway.errors import ConfigurationError, DeployError
from slipway.run_log import run_logger
from tasks.images import ensure_image
from tasks.release.candidate import Trial, claim_spare, create_container, discard, started
from tasks.release.contract import (
    LABEL_LIVE,
    Release,
    container_name,
    health_url,
    release_containers,
    service_url,
)
from tasks.release.health import wait_healthy
from tasks.release.ports import port_free

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget

__all__ = ["Deployed", "deploy_release"]

_STOP_SECONDS = 10
_PORT_POLL_SECONDS = 0.005
"""How often the switch looks whether the old version has let its port go."""


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
    before_switch: Callable[[], None] | None = None,
    trial: Trial | None = None,
) -> Deployed:
    """Run ``release`` beside the serving container, then switch to it once healthy.

    Args:
        client: The deploy target's engine.
        release: What to run.
        target: The deploy target: bind address and the range spare ports come from.
        health_timeout: Seconds each container may take to answer ``/healthz``.
        reserved_ports: Ports that must not be used as spare ports (other services').
        before_switch: Called before any container changes, e.g. to give way to
            a newer push (`give_way_to_newer_push`); raising ends the release there.
        trial: The candidate `start_trial` started beside the tests and push, if any; it
            is used, or removed, either way.

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
        return _deploy(
            client, release, target, health_timeout, reserved_ports, before_switch, trial
        )
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
    before_switch: Callable[[], None] | None,
    trial: Trial | None,
) -> Deployed:
    image = ensure_image(client, release.image)
    if before_switch is not None:
        before_switch()
    if trial is not None and trial.failure is not None:
        raise trial.failure
    if trial is not None and trial.image_id != image.id:
        trial.discard()  # not the pushed image: a candidate of it is started again
        trial = None
    name = container_name(release.service, release.environment, release.sha)
    mine = release_containers(client, release.service, release.environment)  # one listing
    kept = trial.candidate.id if trial is not None and trial.candidate is not None else None
    for leftover in (c for c in mine if c.labels.get(LABEL_LIVE) == "false" and c.id != kept):
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
            if trial is not None:
                trial.discard()
            deployed = _first_start(client, release, name, target, health_timeout)
        else:
            deployed = _switch(
                client, release, name, serving, target, health_timeout, reserved_ports, trial
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
    container = create_container(client, release, name, target, release.port, live=True)
    started(container, name)
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
    trial: Trial | None,
) -> Deployed:
    if trial is not None and trial.candidate is not None:
        candidate, spare = trial.candidate, trial.port
        run_logger(__name__).info("Candidate %s was started beside the tests", candidate.name)
    else:
        candidate, spare = claim_spare(
            client, release, f"{name}-candidate", target, reserved | {release.port}
        )
        run_logger(__name__).info(
            "Starting candidate %s on spare port %d beside %s", candidate.name, spare, serving.name
        )
    try:  # the candidate is removed after the switch, which its removal would delay
        if trial is None or trial.candidate is None:
            started(candidate, str(candidate.name))
        wait_healthy(candidate, health_url(target, spare), sha=release.sha, timeout=timeout)
        final = create_container(client, release, name, target, release.port, live=True)
        switch_began = time.monotonic()
        try:
            with _stopping(serving) as stopped:
                _start_once_free(final, stopped, target, release.port)
                wait_healthy(
                    final, health_url(target, release.port), sha=release.sha, timeout=timeout
                )
                switch = time.monotonic() - switch_began
        except BaseException as e:
            restored = _restore(final, serving)
            run_logger(__name__).error("%s failed on port %d; %s", name, release.port, restored)
            if isinstance(e, DeployError):
                raise DeployError(
                    f"{e.message} (it was healthy on spare port {spare}; {restored})", hint=e.hint
                ) from e
            raise
    finally:
        discard(candidate)
    run_logger(__name__).info("Switched %s to %s in %.2f s", serving.name, name, switch)
    return Deployed(name, service_url(target, release.port), 0, switch, str(serving.name))


@contextmanager
def _stopping(serving: Container) -> Iterator[Future[None]]:
    """``serving`` being stopped in the background; on leaving, its stop has ended.

    A failed stop is raised on leaving, unless the body failed first: the
    caller then restores ``serving``, which its stop must not race.
    """
    stopping = in_background(functools.partial(serving.stop, timeout=_STOP_SECONDS), name="stop")
    try:
        yield stopping
    except BaseException:
        wait([stopping])
        raise
    stopping.result()


def _start_once_free(
    final: Container, stopping: Future[None], target: DeployTarget, port: int
) -> None:
    """Start ``final`` as soon as nothing listens on ``port``, or once ``stopping`` ended.

    The engine's stop returns only after it has torn the stopped container
    down (some 40 ms after its process let the port go, on 2 cores), and
    after the old version drained its requests, if it lets its port go first:
    the new version need not wait for either. The port is looked at only on
    an engine of this machine (a ``unix://`` socket); a remote one's ports
    are not this machine's. A stop that failed is raised before anything starts.
    """
    local = target.docker_host.startswith("unix://")
    while not stopping.done() and not (local and port_free(target.bind_address, port)):
        time.sleep(_PORT_POLL_SECONDS)
    if stopping.done():
        stopping.result()
    final.start()


def _restore(failed: Container, serving: Container) -> str:
    """Remove the new container and start the old one again; says how that went."""
    from docker.errors import DockerException

    try:
        failed.remove(force=True)
        serving.start()  # a no-op when it never stopped
    except DockerException as e:
        return f"{serving.name} could not be restarted ({e}): start it by hand"
    return f"{serving.name} was restarted"
