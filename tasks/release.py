"""Blue-green releases of service images on the deploy target's Docker engine.

**Container contract** (drift detection reads it; keep it exactly): every
service container is named ``<service>-<environment>-<sha12>`` and labelled
``dev.slipway.service``, ``dev.slipway.environment``, ``dev.slipway.sha``
(full sha), ``dev.slipway.image`` (``<registry>/<service>@sha256:...``),
``dev.slipway.port`` and ``dev.slipway.live`` (``"true"`` on the one serving).
Each runs confined, as `tasks.containers.confinement` starts every service container.

**Blue-green on one host.** Containers use the host's network, and two
processes cannot bind one port, so the new version is proven on a spare port
first: a *candidate* (``live=false``) starts on a free port of the deploy
target's range and must answer ``/healthz`` within the health timeout. Only
then is the switch made: the candidate goes, the old container stops, and the
new one starts on the service's port and must answer there too.

- A candidate that fails its health check is removed and the old container
  was never touched: it keeps serving, without one failed request.
- The switch itself costs the new container's start time (typically well
  under a second) during which connections are refused. Should the new
  container then not answer on the real port, it is removed and the old one
  started again.

What was released is recorded by `tasks.release_history`, which also holds
the slot that lets one release at a time touch a service's environment.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from slipway.errors import BuildError, ConfigurationError, DeployError, InvalidRequest
from slipway.names import check_dns_label, check_sha
from tasks.containers import LOG_CONFIG, confinement, is_confined
from tasks.images import content_digest, ensure_image

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget

__all__ = [
    "LABEL_ENVIRONMENT",
    "LABEL_IMAGE",
    "LABEL_LIVE",
    "LABEL_PORT",
    "LABEL_SERVICE",
    "LABEL_SHA",
    "Deployed",
    "LiveContainer",
    "Release",
    "already_serving",
    "container_name",
    "deploy_release",
    "live_container",
    "service_url",
    "wait_healthy",
]

LABEL_SERVICE = "dev.slipway.service"
LABEL_ENVIRONMENT = "dev.slipway.environment"
LABEL_SHA = "dev.slipway.sha"
LABEL_IMAGE = "dev.slipway.image"
LABEL_PORT = "dev.slipway.port"
LABEL_LIVE = "dev.slipway.live"

_STOP_SECONDS = 10
_POLL_FAST, _POLL_SLOW = 0.05, 0.2
"""Seconds between health probes: in the first `_POLL_FAST_SECONDS`, then after."""
_POLL_FAST_SECONDS = 3.0


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@dataclass(frozen=True)
class Release:
    """One image of a service to run in one environment."""

    service: str
    """The service's name."""
    environment: str
    """The environment's name, e.g. ``dev``."""
    sha: str
    """The full commit id the image was built from."""
    image: str
    """``<registry>/<service>@sha256:...``; never a tag, so what ran is known exactly."""
    port: int
    """The port it serves on: the catalog's, or the environment's provisioned one."""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables, e.g. from the environment's provisioning."""

    def __post_init__(self) -> None:
        check_dns_label(self.service, what="service")
        check_dns_label(self.environment, what="environment")
        check_sha(self.sha)
        repository, at, digest = self.image.partition("@")
        if not at or not digest.startswith("sha256:") or not repository:
            raise DeployError(
                f"image {self.image!r} is not pinned by digest",
                hint="deploy `<registry>/<service>@sha256:...`, as build-test-deploy records it",
            )

    @property
    def digest(self) -> str:
        """The ``sha256:...`` part of `image`."""
        return self.image.partition("@")[2]


@dataclass(frozen=True)
class LiveContainer:
    """A container of the contract, as read back from its labels."""

    name: str
    service: str
    environment: str
    sha: str
    image: str
    port: int
    running: bool

    @classmethod
    def of(cls, container: Container) -> LiveContainer:
        """Read the contract's labels of ``container``."""
        labels = container.labels
        return cls(
            name=str(container.name),
            service=labels.get(LABEL_SERVICE, ""),
            environment=labels.get(LABEL_ENVIRONMENT, ""),
            sha=labels.get(LABEL_SHA, ""),
            image=labels.get(LABEL_IMAGE, ""),
            port=int(labels.get(LABEL_PORT, "0") or 0),
            running=container.status == "running",
        )


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


def container_name(service: str, environment: str, sha: str) -> str:
    """``<service>-<environment>-<sha12>``, the contract's name."""
    return f"{service}-{environment}-{sha[:12]}"


def _slipway_containers(
    client: docker.DockerClient, service: str, environment: str, **labels: str
) -> list[Container]:
    filters = [f"{LABEL_SERVICE}={service}", f"{LABEL_ENVIRONMENT}={environment}"]
    filters += [f"dev.slipway.{k}={v}" for k, v in labels.items()]
    # ignore_removed: another release may remove a listed container before it is inspected.
    return list(client.containers.list(all=True, filters={"label": filters}, ignore_removed=True))


def live_container(
    client: docker.DockerClient, service: str, environment: str
) -> LiveContainer | None:
    """The container that serves ``service`` in ``environment`` right now, if one runs."""
    for container in _slipway_containers(client, service, environment, live="true"):
        if container.status == "running":
            return LiveContainer.of(container)
    return None


def already_serving(
    client: docker.DockerClient,
    release: Release,
    *,
    target: DeployTarget,
    content_of: str | None = None,
) -> LiveContainer | None:
    """The live container, if it already runs ``release`` and answers ``/healthz``.

    Already running means the same commit on the same port with the same
    environment variables, from the same image or one of the same content
    (`tasks.images.content_digest`: a rebuild of the same commit differs only
    in its build-time label). Restarting such a container would change
    nothing but cost a start, during which the port refuses requests, as
    Argo CD leaves a synced application alone. Anything that cannot be read
    makes the answer None, and the release simply goes ahead.

    Args:
        client: The deploy target's engine.
        release: What is to run.
        target: The deploy target, whose bind address the service answers on.
        content_of: An image (id or tag) to compare by content instead of
            ``release.image``, e.g. a build not pushed yet.
    """
    for container in _slipway_containers(client, release.service, release.environment, live="true"):
        if container.status != "running":
            continue
        live = LiveContainer.of(container)
        if (live.sha, live.port) != (release.sha, release.port):
            return None
        if not _same_run(client, container, release, target, content_of or release.image):
            return None
        try:
            with httpx.Client(timeout=2.0, trust_env=False) as http:
                answer = http.get(_url(target, release.port))
        except httpx.HTTPError:
            return None
        return live if _healthy(answer, release.sha) else None
    return None


def _same_run(
    client: docker.DockerClient,
    container: Container,
    release: Release,
    target: DeployTarget,
    image: str,
) -> bool:
    """Whether ``container`` runs ``image``'s content with ``release``'s environment variables."""
    from docker.errors import DockerException

    try:
        running = str(container.attrs["Image"])
        same_content = container.labels.get(LABEL_IMAGE) == image or (
            content_digest(client, running) == content_digest(client, image)
        )
        image_env = _env_map(client.images.get(running).attrs["Config"].get("Env"))
    except (DockerException, BuildError, KeyError) as e:
        _log().info("Releasing %s: could not compare it with what runs: %s", release.image, e)
        return False
    wanted = _environment(release, target, release.port)
    have = _env_map(container.attrs["Config"].get("Env"))
    # What the container has beyond ours must come from the image itself.
    return (
        same_content
        and is_confined(container.attrs)  # one started before confinement is replaced
        and all(have.get(k) == v for k, v in wanted.items())
        and all(v == image_env.get(k) for k, v in have.items() if k not in wanted)
    )


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
    for leftover in _slipway_containers(client, release.service, release.environment, live="false"):
        _log().warning("Removing %s, a candidate left by an interrupted release", leftover.name)
        leftover.remove(force=True)
    previous = _slipway_containers(client, release.service, release.environment, live="true")
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
    _log().info("%s serves %s at %s", name, release.image, deployed.url)
    return Deployed(name, deployed.url, total, deployed.switch_seconds, deployed.replaced)


def _first_start(
    client: docker.DockerClient,
    release: Release,
    name: str,
    target: DeployTarget,
    timeout: float,
) -> Deployed:
    if not _port_free(target.bind_address, release.port):
        raise DeployError(
            f"port {release.port} on {target.bind_address} is taken by something that is not "
            f"a Slipway container of {release.service} in {release.environment}",
            hint=f"stop what listens there (`ss -ltnp 'sport = :{release.port}'`) or give the service another port",
        )
    container = _start(client, release, name, target, release.port, live=True)
    try:
        wait_healthy(container, _url(target, release.port), sha=release.sha, timeout=timeout)
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
    candidate, spare = _claim_spare(client, release, name, target, reserved | {release.port})
    _log().info("Starting candidate %s on spare port %d beside %s", name, spare, serving.name)
    _started(candidate, name)
    try:
        wait_healthy(candidate, _url(target, spare), sha=release.sha, timeout=timeout)
    finally:
        candidate.remove(force=True)
    final = _create(client, release, name, target, release.port, live=True)
    switch_began = time.monotonic()
    try:
        serving.stop(timeout=_STOP_SECONDS)
        final.start()
        wait_healthy(final, _url(target, release.port), sha=release.sha, timeout=timeout)
    except BaseException as e:
        restored = _restore(final, serving)
        _log().error("%s failed on port %d; %s", name, release.port, restored)
        if isinstance(e, DeployError):
            raise DeployError(
                f"{e.message} (it was healthy on spare port {spare}; {restored})", hint=e.hint
            ) from e
        raise
    switch = time.monotonic() - switch_began
    _log().info("Switched %s to %s in %.2f s", serving.name, name, switch)
    return Deployed(name, service_url(target, release.port), 0, switch, str(serving.name))


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

    environment = _environment(release, target, port)
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
        port = _spare_port(client, target, frozenset(taken))
        candidate = _create(client, release, name, target, port, live=False)
        claims = client.containers.list(
            all=True, filters={"label": [f"{LABEL_PORT}={port}"]}, ignore_removed=True
        )
        first = min(claims, key=_created, default=candidate)
        if first.id == candidate.id:
            return candidate, port
        candidate.remove(force=True)
        taken.add(port)
    raise DeployError(
        f"no spare port for {name}: other releases claimed each one tried",
        hint="run the release again, or widen the slipway-deploy-target block's port range",
    )


def _created(container: Container) -> tuple[str, str, str]:
    """When the engine created ``container`` (RFC 3339, nanoseconds), as a sortable key."""
    stamp = str(container.attrs.get("Created", ""))
    day, _, fraction = stamp.rstrip("Z").partition(".")
    return day, fraction.ljust(9, "0"), str(container.id)


def wait_healthy(container: Container, url: str, *, sha: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200 (and, when it reports one, the right version).

    Raises:
        DeployError: The container exited (saying with which code, after how
            long), or ``timeout`` passed (with the last answer); either way it
            carries the tail of the container's log.
    """
    from docker.errors import NotFound

    began = time.monotonic()
    deadline = began + timeout
    fast_until = began + _POLL_FAST_SECONDS
    last = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while True:
            try:
                container.reload()
            except NotFound as e:
                raise DeployError(f"{container.name} disappeared while starting") from e
            # A live container restarts on exit: a restart is an exit too.
            if container.status in ("exited", "dead", "restarting") or container.attrs.get(
                "RestartCount"
            ):
                exited = _exited(container, time.monotonic() - began, url)
                raise DeployError(
                    exited + _log_tail(container, why=exited),
                    hint="fix the start-up error its log shows, then push again; "
                    "the previous version keeps serving",
                )
            try:
                response = http.get(url)
                if _healthy(response, sha):
                    return
                version = _version(response)
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                if version not in (None, sha):
                    last = f"{url} reports version {version}, not {sha[:12]}"
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                break
            # Close polling while a healthy start is likely: during the switch, every
            # moment between "up" and "seen up" is a moment the port refuses requests.
            time.sleep(_POLL_FAST if time.monotonic() < fast_until else _POLL_SLOW)
    raise DeployError(
        f"{container.name} did not become healthy within {timeout:.0f} s at {url}: {last}"
        + _log_tail(container, why=last),
        hint="fix /healthz or the start-up error above, then push again; the previous version keeps serving",
    )


def _exited(container: Container, waited: float, url: str) -> str:
    """``the container ... exited with code 1 after 0.4 s``, timed by Docker where it can be."""
    state = container.attrs.get("State") or {}
    ran = _seconds_between(state.get("StartedAt"), state.get("FinishedAt"))
    seconds = ran if ran is not None else waited
    restarts = container.attrs.get("RestartCount") or 0
    again = f" (restarted {restarts}x by Docker, exiting each time)" if restarts else ""
    return (
        f"the container {container.name} exited with code {state.get('ExitCode')} after "
        f"{seconds:.{2 if seconds < 10 else 0}f} s, before {url} answered{again}"
    )


def _seconds_between(started: object, finished: object) -> float | None:
    """Seconds between two of Docker's timestamps (nanosecond RFC 3339), or None."""
    try:  # Python 3.11 reads the Z and drops digits past the microsecond
        times = [datetime.fromisoformat(str(t)) for t in (started, finished)]
    except ValueError:
        return None
    seconds = (times[1] - times[0]).total_seconds()
    return seconds if seconds >= 0 else None


def _log_tail(container: Container, *, why: str, lines: int = 20) -> str:
    """The last lines of the candidate's log for the error, also attached to the run as an artifact."""
    from tasks.monitoring.logs import attach_log_tail  # it imports this module

    logs = "\n".join(attach_log_tail(container, why=why).splitlines()[-lines:])
    return f"\ncontainer log (last {lines} lines):\n{logs}"


def _environment(release: Release, target: DeployTarget, port: int) -> dict[str, str]:
    """The environment variables a container of ``release`` gets on ``port``."""
    return {
        **release.env_vars,
        "HOST": target.bind_address,
        "PORT": str(port),
        "GIT_SHA": release.sha,
    }


def _env_map(entries: list[str] | None) -> dict[str, str]:
    """Docker's ``KEY=value`` list as a mapping."""
    return dict(entry.partition("=")[::2] for entry in entries or [])


def _healthy(response: httpx.Response, sha: str) -> bool:
    """A 200 from /healthz that reports ``sha``, or no version at all."""
    return response.status_code == 200 and _version(response) in (None, sha)


def _version(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return str(version) if isinstance(version, str) and len(version) >= 7 else None


def service_url(target: DeployTarget, port: int) -> str:
    """Where a service on ``port`` of the deploy target answers, e.g. ``http://127.0.0.1:8101/``."""
    return _url(target, port, "")


def _url(target: DeployTarget, port: int, path: str = "healthz") -> str:
    return f"http://{target.bind_address}:{port}/{path}"


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _spare_port(client: docker.DockerClient, target: DeployTarget, reserved: frozenset[int]) -> int:
    """A free port of the target's range that no Slipway container or service claims.

    Searched from the top of the range, since services are given ports from the bottom.
    """
    claimed = set(reserved)
    labelled = client.containers.list(
        all=True, filters={"label": [LABEL_PORT]}, ignore_removed=True
    )
    for container in labelled:
        port = container.labels.get(LABEL_PORT, "")
        if port.isdigit():
            claimed.add(int(port))
    for port in range(target.port_range_end, target.port_range_start - 1, -1):
        if port not in claimed and _port_free(target.bind_address, port):
            return port
    raise DeployError(
        f"no free port in {target.port_range_start}-{target.port_range_end} for a candidate",
        hint="widen the slipway-deploy-target block's port range",
    )
