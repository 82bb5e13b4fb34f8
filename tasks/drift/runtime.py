"""What actually runs on the deploy target, compared with what an environment should run.

Containers are read through the release contract of `tasks.release.contract` (names
``<service>-<environment>-<sha12>``, ``dev.slipway.*`` labels, ``live="true"``
on the serving one); this module never invents containers of its own. What an
environment should run comes from its Terraform state (port, replicas,
environment variables) and from the recorded release (the image).

Restoring is deliberately narrow, in the spirit of Argo CD's self-heal: a
stopped serving container is started again, and a serving container that runs
another image, port or environment is replaced by a copy that runs the
recorded image with the state's settings; the drifted one comes back if the
copy does not stay up. Nothing is ever removed that Slipway did not replace.
A serving container that runs unconfined (as root, with capabilities, without
limits: started by hand or before confinement) is drift too, and its
replacement runs confined (`tasks.containers.confinement`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from slipway.errors import DeployError, InvalidRequest
from tasks.catalog.entry import EnvironmentOutputs
from tasks.containers import LOG_CONFIG, confinement, is_confined
from tasks.release.contract import (
    LABEL_ENVIRONMENT,
    LABEL_IMAGE,
    LABEL_LIVE,
    LABEL_PORT,
    LABEL_SERVICE,
    LABEL_SHA,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget

__all__ = [
    "DesiredRuntime",
    "Finding",
    "ServiceContainer",
    "compare",
    "image_resolver",
    "observe",
    "restore",
    "unclaimed",
]

logger = logging.getLogger(__name__)

FindingKind = Literal["missing", "stopped", "replicas", "port", "env", "image", "confinement"]
_STABLE_SECONDS = 2.0
_HEALTHY_SECONDS = 60.0


@dataclass(frozen=True)
class ServiceContainer:
    """One container of the release contract, as the engine reports it."""

    id: str
    name: str
    service: str
    environment: str
    sha: str
    image: str
    """The ``dev.slipway.image`` label: the image it was released with."""
    image_id: str
    """The image that it actually runs (``sha256:...``)."""
    port: int | None
    live: bool
    status: str
    """Docker's status: ``running``, ``exited``, ``created``, ``paused``..."""
    env: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    confined: bool = True
    """Whether it runs as `tasks.containers.confinement` starts containers."""

    @property
    def running(self) -> bool:
        """Whether it is up."""
        return self.status == "running"

    @classmethod
    def of(cls, container: Container) -> ServiceContainer:
        """Read one container's labels and state."""
        labels: Mapping[str, str] = container.labels or {}
        attrs: Mapping[str, Any] = container.attrs
        env = dict(
            item.partition("=")[::2] for item in (attrs.get("Config") or {}).get("Env") or []
        )
        port = labels.get(LABEL_PORT, "")
        return cls(
            id=str(container.id),
            name=str(container.name),
            service=labels.get(LABEL_SERVICE, ""),
            environment=labels.get(LABEL_ENVIRONMENT, ""),
            sha=labels.get(LABEL_SHA, ""),
            image=labels.get(LABEL_IMAGE, ""),
            image_id=str(attrs.get("Image", "")),
            port=int(port) if port.isdigit() else None,
            live=labels.get(LABEL_LIVE) == "true",
            status=str(container.status),
            env=env,
            created=str(attrs.get("Created", "")),
            confined=is_confined(attrs),
        )


@dataclass(frozen=True)
class DesiredRuntime:
    """What one environment should run: Terraform's outputs and the recorded image."""

    service: str
    environment: str
    port: int
    replicas: int
    env_vars: Mapping[str, str]
    image: str | None = None
    """The recorded release's image; None falls back to each container's own label."""

    @classmethod
    def from_outputs(
        cls, service: str, environment: str, outputs: EnvironmentOutputs, image: str | None
    ) -> DesiredRuntime:
        """From an environment module's outputs: ``port``, ``replicas``, ``env_vars``."""
        return cls(
            service=service,
            environment=environment,
            port=outputs.port or 0,
            replicas=1 if outputs.replicas is None else outputs.replicas,
            env_vars=outputs.env_vars,
            image=image,
        )


@dataclass(frozen=True)
class Finding:
    """One way in which what runs differs from what should."""

    kind: FindingKind
    message: str
    container: str | None = None
    """The container's id, when the finding is about one."""


def observe(client: docker.DockerClient) -> list[ServiceContainer]:
    """Every container of the contract on the engine, stopped ones included."""
    found = client.containers.list(
        all=True, filters={"label": [LABEL_SERVICE]}, ignore_removed=True
    )
    return [ServiceContainer.of(c) for c in found]


def image_resolver(client: docker.DockerClient) -> Callable[[str], str | None]:
    """Image reference → image id on the engine (None when absent), remembered per check."""
    from docker.errors import DockerException

    known: dict[str, str | None] = {}

    def resolve(reference: str) -> str | None:
        if reference not in known:
            try:
                known[reference] = str(client.images.get(reference).id)
            except DockerException:
                known[reference] = None
        return known[reference]

    return resolve


def compare(
    desired: DesiredRuntime,
    containers: list[ServiceContainer],
    resolve: Callable[[str], str | None],
) -> list[Finding]:
    """How the environment's serving containers differ from ``desired``; empty when in sync.

    Environment variable values are never put in a finding: they may be secrets.
    """
    mine = [c for c in containers if _belongs(c, desired) and c.live]
    running = [c for c in mine if c.running]
    stopped = sorted((c for c in mine if not c.running), key=lambda c: c.created, reverse=True)
    found: list[Finding] = []
    if desired.replicas > 0 and not mine:
        found.append(Finding("missing", "no serving container (live=true) exists"))
    elif len(running) < desired.replicas and stopped:
        deficit = desired.replicas - len(running)
        found += [Finding("stopped", f"{c.name} is {c.status}", c.id) for c in stopped[:deficit]]
    elif len(running) != desired.replicas:
        found.append(
            Finding("replicas", f"{len(running)} running, Terraform state says {desired.replicas}")
        )
    for c in running:
        found += _differences(c, desired, resolve)
    return found


def _differences(
    c: ServiceContainer, desired: DesiredRuntime, resolve: Callable[[str], str | None]
) -> list[Finding]:
    found = []
    if not c.confined:
        message = f"{c.name} runs unconfined (as root, with capabilities or without limits)"
        found.append(Finding("confinement", message, c.id))
    env_port = c.env.get("PORT")
    if c.port != desired.port or (env_port is not None and env_port != str(desired.port)):
        found.append(
            Finding("port", f"{c.name} serves port {c.port}, state says {desired.port}", c.id)
        )
    changed = sorted(k for k, v in desired.env_vars.items() if c.env.get(k) != v)
    if changed:
        names = ", ".join(changed)
        found.append(Finding("env", f"{c.name} has other values for {names}", c.id))
    recorded = desired.image or c.image
    want = resolve(recorded) if recorded else None
    if not recorded:
        found.append(Finding("image", f"{c.name} has no recorded image", c.id))
    elif want is None:
        found.append(Finding("image", f"recorded image {recorded} is not on the engine", c.id))
    elif want != c.image_id:
        found.append(
            Finding("image", f"{c.name} runs {c.image_id[7:19]}, recorded {recorded}", c.id)
        )
    return found


def unclaimed(
    containers: list[ServiceContainer], environments: set[tuple[str, str]]
) -> dict[tuple[str, str], list[str]]:
    """Serving containers whose service and environment are not among ``environments``."""
    found: dict[tuple[str, str], list[str]] = {}
    for c in containers:
        if c.live and c.running and (c.service, c.environment) not in environments:
            found.setdefault((c.service, c.environment), []).append(c.name)
    return found


def restore(
    client: docker.DockerClient,
    desired: DesiredRuntime,
    findings: list[Finding],
    *,
    target: DeployTarget,
) -> list[str]:
    """Undo what can be undone safely; returns one line per action taken.

    A stopped container that ran unconfined is replaced rather than started.

    Raises:
        DeployError: a restored container did not stay up; the drifted one was put back.
    """
    actions = []
    replace = {"image", "port", "env", "confinement"}
    drifted = {f.container for f in findings if f.kind in replace and f.container}
    for finding in findings:
        if finding.kind == "stopped" and finding.container:
            container = client.containers.get(finding.container)
            if not is_confined(container.attrs):
                drifted.add(finding.container)
                continue
            container.start()
            _wait_stable(container)
            actions.append(f"started {container.name}")
    for container_id in sorted(drifted):
        actions.append(_replace(client, container_id, desired, target))
    return actions


def _replace(
    client: docker.DockerClient, container_id: str, desired: DesiredRuntime, target: DeployTarget
) -> str:
    """Run the recorded image with the state's port and environment in the drifted one's place."""
    old = client.containers.get(container_id)
    seen = ServiceContainer.of(old)
    image = desired.image or seen.image
    if not image:
        raise DeployError(f"{seen.name} has no recorded image to restore", hint=_DEPLOY_HINT)
    try:
        confined = confinement(client, image, target)
    except InvalidRequest as e:
        raise DeployError(f"{e.message}: {seen.name} was not replaced", hint=e.hint) from e
    config: Mapping[str, Any] = old.attrs.get("Config") or {}
    host: Mapping[str, Any] = old.attrs.get("HostConfig") or {}
    own_env = _image_env(client, seen.image_id)
    env = {k: v for k, v in seen.env.items() if own_env.get(k) != v}
    env.update(desired.env_vars)
    if "PORT" in env:
        env["PORT"] = str(desired.port)
    labels = {**(old.labels or {}), LABEL_IMAGE: image, LABEL_PORT: str(desired.port)}
    command = config.get("Cmd") if config.get("Cmd") != _image_cmd(client, seen.image_id) else None
    restart: Mapping[str, Any] = host.get("RestartPolicy") or {}
    old.stop(timeout=10)
    old.rename(f"{seen.name}-drifted")
    try:
        new = client.containers.run(
            image,
            command=command,
            name=seen.name,
            labels=labels,
            environment=env,
            restart_policy=restart if restart.get("Name") else None,
            log_config=LOG_CONFIG,  # rotated by the engine (tasks.containers)
            detach=True,
            **confined.options(),
        )
        _wait_stable(new)
    except BaseException:
        _put_back(client, seen.name, old)
        raise
    old.remove(force=True)
    return f"replaced {seen.name} with {image} on port {desired.port}"


def _put_back(client: docker.DockerClient, name: str, old: Container) -> None:
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        client.containers.get(name).remove(force=True)
    old.rename(name)
    old.start()
    logger.error("restoring %s failed; the drifted container was started again", name)


def _wait_stable(container: Container) -> None:
    """Running for a moment, and healthy when the image has a HEALTHCHECK."""
    deadline = time.monotonic() + _HEALTHY_SECONDS
    up_since: float | None = None
    while time.monotonic() < deadline:
        container.reload()
        state: Mapping[str, Any] = container.attrs.get("State") or {}
        if not state.get("Running"):
            logs = container.logs(tail=10).decode(errors="replace").strip()
            raise DeployError(
                f"{container.name} exited with {state.get('ExitCode')}: {logs or 'no output'}",
                hint=_DEPLOY_HINT,
            )
        health = (state.get("Health") or {}).get("Status")
        up_since = up_since or time.monotonic()
        if health in (None, "healthy") and time.monotonic() - up_since >= _STABLE_SECONDS:
            return
        time.sleep(0.25)
    raise DeployError(f"{container.name} did not become healthy", hint=_DEPLOY_HINT)


def _image_env(client: docker.DockerClient, image_id: str) -> dict[str, str]:
    config = _image_config(client, image_id)
    return dict(item.partition("=")[::2] for item in config.get("Env") or [])


def _image_cmd(client: docker.DockerClient, image_id: str) -> object:
    return _image_config(client, image_id).get("Cmd")


def _image_config(client: docker.DockerClient, image_id: str) -> Mapping[str, Any]:
    from docker.errors import DockerException

    try:
        attrs: Mapping[str, Any] = client.images.get(image_id).attrs
    except DockerException:
        return {}
    return attrs.get("Config") or {}


def _belongs(c: ServiceContainer, desired: DesiredRuntime) -> bool:
    return (c.service, c.environment) == (desired.service, desired.environment)


_DEPLOY_HINT = "deploy the recorded release again with the rollback deployment (to=<sha>)"
