"""The container contract of a release, and reading back what runs.

Drift detection reads this contract; keep it exactly. Every service container
is named ``<service>-<environment>-<sha12>`` and labelled
``dev.slipway.service``, ``dev.slipway.environment``, ``dev.slipway.sha``
(full sha), ``dev.slipway.image`` (``<registry>/<service>@sha256:...``),
``dev.slipway.port`` and ``dev.slipway.live`` (``"true"`` on the one serving).
Each runs confined, as `tasks.containers.confinement` starts every service container.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from slipway.errors import BuildError, DeployError
from slipway.http import shared_client
from slipway.names import EnvironmentName, GitSha, ServiceName
from slipway.run_log import run_logger
from tasks.containers import is_confined
from tasks.images import content_digest

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
    "LiveContainer",
    "Release",
    "already_serving",
    "container_environment",
    "container_started_at",
    "container_name",
    "health_url",
    "healthy",
    "live_container",
    "release_containers",
    "reported_version",
    "service_url",
]

LABEL_SERVICE = "dev.slipway.service"
LABEL_ENVIRONMENT = "dev.slipway.environment"
LABEL_SHA = "dev.slipway.sha"
LABEL_IMAGE = "dev.slipway.image"
LABEL_PORT = "dev.slipway.port"
LABEL_LIVE = "dev.slipway.live"


@dataclass(frozen=True)
class Release:
    """One image of a service to run in one environment."""

    service: ServiceName
    """The service's name."""
    environment: EnvironmentName
    """The environment's name, e.g. ``dev``."""
    sha: GitSha
    """The full commit id the image was built from."""
    image: str
    """``<registry>/<service>@sha256:...``; never a tag, so what ran is known exactly."""
    port: int
    """The port it serves on: the catalog's, or the environment's provisioned one."""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables, e.g. from the environment's provisioning."""
    secrets: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)
    """Secret environment variables (`tasks.secret_env`), unwrapped only into the container."""

    def __post_init__(self) -> None:
        # Names typed where they entered pass as they are; text is checked here.
        object.__setattr__(self, "service", ServiceName.parse(self.service))
        object.__setattr__(self, "environment", EnvironmentName.parse(self.environment))
        object.__setattr__(self, "sha", GitSha.parse(self.sha))
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
    id: str = field(default="", compare=False)
    """The engine's id: unlike the name, a new release of the same commit gets a new one.

    Not compared: two containers of the same contract read the same."""

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
            id=str(container.id),
        )


def container_name(service: str, environment: str, sha: str) -> str:
    """``<service>-<environment>-<sha12>``, the contract's name."""
    return f"{service}-{environment}-{sha[:12]}"


def release_containers(
    client: docker.DockerClient, service: str, environment: str, **labels: str
) -> list[Container]:
    """The contract's containers of ``service`` in ``environment``, stopped ones too.

    ``labels`` narrow it further, e.g. ``live="true"``.
    """
    filters = [f"{LABEL_SERVICE}={service}", f"{LABEL_ENVIRONMENT}={environment}"]
    filters += [f"dev.slipway.{k}={v}" for k, v in labels.items()]
    # ignore_removed: another release may remove a listed container before it is inspected.
    return list(client.containers.list(all=True, filters={"label": filters}, ignore_removed=True))


def live_container(
    client: docker.DockerClient, service: str, environment: str
) -> LiveContainer | None:
    """The container that serves ``service`` in ``environment`` right now, if one runs."""
    for container in release_containers(client, service, environment, live="true"):
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
    for container in release_containers(client, release.service, release.environment, live="true"):
        if container.status != "running":
            continue
        live = LiveContainer.of(container)
        if (live.sha, live.port) != (release.sha, release.port):
            return None
        if not _same_run(client, container, release, target, content_of or release.image):
            return None
        try:
            answer = shared_client(trust_env=False).get(
                health_url(target, release.port), timeout=2.0
            )
        except httpx.HTTPError:
            return None
        return live if healthy(answer, release.sha) else None
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
        run_logger(__name__).info(
            "Releasing %s: could not compare it with what runs: %s", release.image, e
        )
        return False
    wanted = container_environment(release, target, release.port)
    have = _env_map(container.attrs["Config"].get("Env"))
    # What the container has beyond ours must come from the image itself.
    return (
        same_content
        and is_confined(container.attrs)  # one started before confinement is replaced
        and all(have.get(k) == v for k, v in wanted.items())
        and all(v == image_env.get(k) for k, v in have.items() if k not in wanted)
    )


def container_started_at(client: docker.DockerClient, container_id: str) -> float:
    """When the container last started (epoch seconds); -inf when that cannot be read.

    A container restarted after a newer release failed to switch on its port
    has a later start: its analysis counts only what it answered since.
    """
    from docker.errors import DockerException

    try:
        started = str(client.containers.get(container_id).attrs["State"]["StartedAt"])
        # The engine gives nanoseconds; Python takes microseconds.
        whole, _, fraction = started.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{whole}.{fraction[:6] or 0}+00:00").timestamp()
    except (DockerException, KeyError, ValueError):
        return float("-inf")


def container_environment(release: Release, target: DeployTarget, port: int) -> dict[str, str]:
    """The environment variables a container of ``release`` gets on ``port``."""
    return {
        **release.env_vars,
        **{name: value.get_secret_value() for name, value in release.secrets.items()},
        "HOST": target.bind_address,
        "PORT": str(port),
        "GIT_SHA": release.sha,
    }


def _env_map(entries: list[str] | None) -> dict[str, str]:
    """Docker's ``KEY=value`` list as a mapping."""
    return dict(entry.partition("=")[::2] for entry in entries or [])


def healthy(response: httpx.Response, sha: str) -> bool:
    """A 200 from /healthz that reports ``sha``, or no version at all."""
    return response.status_code == 200 and reported_version(response) in (None, sha)


def reported_version(response: httpx.Response) -> str | None:
    """The ``version`` a /healthz answer reports, when it reports one."""
    try:
        body = response.json()
    except ValueError:
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return str(version) if isinstance(version, str) and len(version) >= 7 else None


def service_url(target: DeployTarget, port: int) -> str:
    """Where a service on ``port`` of the deploy target answers, e.g. ``http://127.0.0.1:8101/``."""
    return f"http://{target.bind_address}:{port}/"


def health_url(target: DeployTarget, port: int) -> str:
    """Where a service on ``port`` answers its health check."""
    return f"{service_url(target, port)}healthz"
