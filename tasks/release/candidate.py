"""A release's containers: created confined under the contract, started, and candidates on spare ports.

A candidate (``live=false``) proves a new version on a spare port of the
deploy target's range before `tasks.release.blue_green` switches to it.
build-test-deploy starts its candidate once the image's tests run, while
they run and it is pushed (`trial_beside`): from the local image, whose
pushed digest is not known yet, labelled with the release it will become.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.background import alongside
from slipway.errors import DeployError, InvalidRequest
from slipway.names import GitSha
from slipway.run_log import run_logger
from tasks.containers import LOG_CONFIG, confinement
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
)
from tasks.release.health import wait_healthy
from tasks.release.ports import first_claim, spare_port

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget
    from tasks.images import BuiltImage
    from tasks.release.stage import Stage

__all__ = [
    "Trial",
    "claim_spare",
    "create_container",
    "discard",
    "start_trial",
    "started",
    "trial_beside",
]

_TRIAL_CPU_SHARES = 128
"""The trial's CPU weight (Docker's default is 1024): it yields the cores to the tests.

The tests are what the release waits for; the trial has until the push ends.
Only a weight under contention, never a limit: with the cores idle it starts
as fast as any container. The serving container is a new one, with the default.
"""


@dataclass(frozen=True)
class Trial:
    """A candidate started from a local image before its tests and push ended (`start_trial`)."""

    image_id: str
    """The engine's id of the image it runs (``sha256:...``)."""
    candidate: Container | None = None
    """Healthy on `port`; None when nothing served (a first deploy) or it failed."""
    port: int = 0
    failure: DeployError | None = None
    """Why it did not become healthy: the release fails with this."""

    def discard(self) -> None:
        """Remove the candidate, if the switch has not already."""
        if self.candidate is not None:
            discard(self.candidate)


@task(name="start-trial", cache_policy=NO_CACHE)
def start_trial(
    client: docker.DockerClient,
    release: Release,
    image_id: str,
    *,
    target: DeployTarget,
    health_timeout: float,
    reserved_ports: frozenset[int] = frozenset(),
    abandoned: Callable[[], bool] | None = None,
) -> Trial:
    """Start the local image ``image_id`` as ``release``'s candidate and wait until it answers.

    Started while the image is tested and pushed, so that the switch does not
    wait for a candidate's start. Nothing serving means no candidate: a first
    deploy starts on the service's port, after the push. A candidate that
    fails (or an engine that fails it) is removed, and the trial carries the
    failure, with which the release fails and is recorded (`deploy_release`).
    Once ``abandoned`` says yes (the tests failed), it stops at its next step
    and removes what it started.
    """
    from docker.errors import DockerException

    name = f"{container_name(release.service, release.environment, release.sha)}-candidate"
    candidate = None
    try:
        live = release_containers(client, release.service, release.environment, live="true")
        if not any(c.status == "running" for c in live):
            return Trial(image_id)
        candidate, spare = claim_spare(
            client,
            release,
            name,
            target,
            reserved_ports | {release.port},
            image=image_id,
            cpu_shares=_TRIAL_CPU_SHARES,
        )
        if abandoned is not None and abandoned():
            raise DeployError(f"{name} was abandoned before it started")
        run_logger(__name__).info("Starting candidate %s on spare port %d", name, spare)
        started(candidate, name)
        wait_healthy(
            candidate,
            health_url(target, spare),
            sha=release.sha,
            timeout=health_timeout,
            abandoned=abandoned,
        )
    except (DeployError, DockerException) as e:
        if candidate is not None:
            discard(candidate)
        return Trial(image_id, failure=_as_deploy_error(e, name))
    except BaseException:
        if candidate is not None:
            discard(candidate)
        raise
    return Trial(image_id, candidate, spare)


def _as_deploy_error(error: Exception, name: str) -> DeployError:
    """The failure a trial carries; raised later, by the release (`deploy_release`)."""
    if isinstance(error, DeployError):
        return error
    failure = DeployError(f"the Docker engine failed starting {name}: {error}")
    failure.__cause__ = error
    return failure


def create_container(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    port: int,
    *,
    live: bool,
    image: str | None = None,
    cpu_shares: int | None = None,
) -> Container:
    """A container of ``release`` on ``port``; of the local ``image`` when given (a trial's).

    ``cpu_shares`` is its CPU weight under contention; Docker's default when None.
    """
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
        confined = confinement(client, image or release.image, target)
    except InvalidRequest as e:
        raise DeployError(f"{e.message}: it was not released", hint=e.hint) from e
    try:
        return client.containers.create(
            image or release.image,
            name=name,
            detach=True,
            environment=environment,
            labels=labels,
            restart_policy={"Name": "unless-stopped"} if live else {"Name": "no"},
            log_config=LOG_CONFIG,  # rotated by the engine (tasks.containers)
            **confined.options(),
            **({"cpu_shares": cpu_shares} if cpu_shares is not None else {}),
        )
    except DockerException as e:
        raise DeployError(f"the engine refused to create {name}: {e}") from e


def started(container: Container, name: str) -> Container:
    """``container`` started; removed when the engine refuses to start it."""
    from docker.errors import DockerException

    try:
        container.start()
    except DockerException as e:
        container.remove(force=True)
        raise DeployError(f"{name} did not start: {e}") from e
    return container


def discard(container: Container) -> None:
    """Remove ``container``, which may be gone already (`started` removes one that did not start)."""
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        container.remove(force=True)


def claim_spare(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    reserved: frozenset[int],
    *,
    image: str | None = None,
    cpu_shares: int | None = None,
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
        candidate = create_container(
            client, release, name, target, port, live=False, image=image, cpu_shares=cpu_shares
        )
        if first_claim(client, candidate, port):
            return candidate, port
        candidate.remove(force=True)
        taken.add(port)
    raise DeployError(
        f"no spare port for {name}: other releases claimed each one tried",
        hint="run the release again, or widen the slipway-deploy-target block's port range",
    )


@contextmanager
def trial_beside(
    stage: Stage, built: BuiltImage, sha: GitSha
) -> Iterator[tuple[Callable[[], None], Callable[[], Trial]]]:
    """``built``'s candidate, started beside its tests and push (`start_trial`).

    The body calls the first callable once the tests' container runs: two
    containers started at once each start later (the engine does both), and
    the tests are what the release waits for. It takes the trial with the
    second. The candidate runs the local image, so it waits for neither the
    tests' end nor the push: the switch takes it once the pushed digest
    names that same image. It is confined as every release container is and
    serves nobody until the switch; passing tests were never a trust gate,
    as the repository writes them. Leaving without taking it (the tests
    failed, the build already serves, the push failed) abandons it: it is
    removed before the image is, or never started.
    """
    abandon, begin = threading.Event(), threading.Event()
    start = functools.partial(
        start_trial,
        stage.client,
        stage.release(sha, f"{stage.repository}@{built.image_id}"),
        built.image_id,
        target=stage.target,
        health_timeout=stage.settings.health_timeout_seconds,
        reserved_ports=stage.reserved_ports,
        abandoned=abandon.is_set,
    )
    taken: list[Trial] = []

    def when_begun() -> Trial:
        begin.wait()
        return Trial(built.image_id) if abandon.is_set() else start()

    def take() -> Trial:
        begin.set()
        taken.append(trying.result())
        return taken[0]

    with alongside(when_begun, name="trial") as trying:
        try:
            yield begin.set, take
        finally:
            if not taken:
                abandon.set()
                begin.set()
                if trying.exception() is None:  # waits for the candidate's next step
                    trying.result().discard()
