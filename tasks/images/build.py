"""Building a service's image on the deploy target's Docker engine, and the tags a build leaves.

An image is tagged ``<registry>/<service>:<sha>`` and carries the commit and
its build time as labels (`tasks.images.inputs`). Its ``RUN`` steps have no
network (the deploy target's ``build_network``): build-time dependencies come
from the wheelhouse the platform fetched into the context (`tasks.wheelhouse`).
A build of inputs built before is found by its ``inputs-`` tag and tagged
again instead.

Every name that reaches Docker is checked first, so a service, a sha or a
registry can never become a flag or an unexpected ref.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.deploy_target import DeployTarget
from slipway.errors import BuildError
from slipway.names import ServiceName, check_host_port, check_sha
from slipway.run_log import run_logger
from tasks.images.inputs import (
    LABEL_BUILT,
    LABEL_REVISION,
    build_inputs_digest,
    built_at,
    built_before,
    repo_digest,
    tag_image,
)
from tasks.images.suite import tail_lines
from tasks.wheelhouse import WHEELHOUSE, Wheelhouse, prepare_wheelhouse

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

    from blocks.container_registry import ContainerRegistry

__all__ = [
    "INPUTS_TAG_PREFIX",
    "BuiltImage",
    "build_image",
    "ensure_image",
    "image_repository",
    "remove_image",
    "removed_unless_pushed",
]

INPUTS_TAG_PREFIX = "inputs-"
"""An image's second local tag, ``<repository>:inputs-<build_inputs_digest>``, by which a
later build of the same inputs finds it. A tag, not a label: the engine's classic builder
adds each label as a build step of its own, about a tenth of a second each."""
_NO_NETWORK_HINT = (
    "fix the Dockerfile or the step above, then push again; RUN steps have no network: "
    "Python dependencies come from requirements.txt through the platform's wheelhouse "
    f"({WHEELHOUSE}/, see the python-service template)"
)


@dataclass(frozen=True)
class BuiltImage:
    """An image built from one commit, present on the engine that built it."""

    service: str
    """The service it belongs to."""
    sha: str
    """The full commit id it was built from."""
    tag: str
    """``<registry>/<service>:<sha>``."""
    image_id: str
    """The engine's id of the image (``sha256:...``)."""
    built_at: datetime
    """When the build finished, also in the image's ``created`` label."""
    seconds: float
    """How long the build took."""
    reused: bool = False
    """Whether an earlier build of the same inputs was tagged instead of building
    (`build_inputs_digest`); its tags are then not this run's to remove."""
    inputs_tag: str | None = None
    """``<repository>:inputs-<digest>`` (`INPUTS_TAG_PREFIX`); None when the inputs are not known."""


def image_repository(registry: ContainerRegistry, service: str) -> str:
    """``<registry>/<service>``, the repository every image of ``service`` goes to."""
    return f"{check_host_port(registry.url)}/{ServiceName.parse(service)}"


@task(name="build-image", cache_policy=NO_CACHE)
def build_image(
    client: docker.DockerClient,
    context: Path,
    *,
    service: str,
    sha: str,
    repository: str,
    base_image: str,
    timeout: float = 600,
    target: DeployTarget | None = None,
    wheelhouses: Path | None = None,
) -> BuiltImage:
    """Build the Dockerfile in ``context`` with the engine's layer cache and no network.

    The wheelhouse of the service's ``requirements.txt`` is put into the
    context first (`tasks.wheelhouse`) and taken out again afterwards.

    Args:
        client: The deploy target's engine.
        context: The checked-out service: its Dockerfile and build context.
        service: The service's name.
        sha: The full commit id, the tag and the revision label.
        repository: ``<registry>/<service>``, see `image_repository`.
        base_image: Passed as the ``BASE_IMAGE`` build argument.
        timeout: Seconds the engine may take.
        target: The deploy target: the build network and the package index;
            its defaults (no network, pip's own index) when None.
        wheelhouses: Where wheelhouses are cached; a throw-away place when None.

    Raises:
        BuildError: The Dockerfile is missing, a requirement is refused, or a build
            step failed; carries the log tail.
    """
    check_sha(sha)
    dockerfile = _dockerfile(context, service, sha)
    target = target or DeployTarget()
    tag = f"{repository}:{sha}"
    buildargs = {"BASE_IMAGE": base_image}
    began = time.monotonic()
    with _wheelhouse_in(client, context, base_image, target, wheelhouses) as wheels:
        extra = {"wheelhouse": wheels.key, "network": target.build_network}
        text = dockerfile.read_text()
        inputs = build_inputs_digest(client, text, sha=sha, buildargs=buildargs, extra=extra)
        inputs_tag = f"{repository}:{INPUTS_TAG_PREFIX}{inputs}" if inputs else None
        earlier = built_before(client, inputs_tag, tag=tag, sha=sha) if inputs_tag else None
        if earlier is not None:
            return _reused(earlier, service, sha, tag, inputs_tag, began=began)
        when = datetime.now(UTC).replace(microsecond=0)
        labels = {LABEL_REVISION: sha, LABEL_BUILT: when.isoformat()}
        run_logger(__name__).info("Building %s from %s on %s", tag, sha[:12], base_image)
        what = f"the image of {service} at {sha[:12]}"
        image = _engine_build(client, context, tag, buildargs, labels, target, what, timeout)
    if inputs_tag is not None and not tag_image(image, inputs_tag):
        inputs_tag = None
    seconds = time.monotonic() - began
    run_logger(__name__).info("Built %s (%s) in %.1f s", tag, image.short_id, seconds)
    return BuiltImage(service, sha, tag, str(image.id), when, seconds, inputs_tag=inputs_tag)


def _dockerfile(context: Path, service: str, sha: str) -> Path:
    """The Dockerfile at the root of the checked-out commit; refuses a commit without one."""
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(
            f"{service} has no Dockerfile at the root of commit {sha[:12]}",
            hint="add a Dockerfile (the python-service template has one)",
        )
    return dockerfile


def _reused(
    earlier: Image, service: str, sha: str, tag: str, inputs_tag: str | None, *, began: float
) -> BuiltImage:
    """``earlier``, built from the same inputs and now tagged ``tag``, as this run's build."""
    when = built_at(earlier)
    run_logger(__name__).info(
        "Reused %s (%s), built from the same commit, arguments and base images at %s",
        *(tag, earlier.short_id, when.isoformat()),
    )
    seconds = time.monotonic() - began
    return BuiltImage(
        *(service, sha, tag, str(earlier.id), when, seconds), reused=True, inputs_tag=inputs_tag
    )


@contextmanager
def _wheelhouse_in(
    client: docker.DockerClient,
    context: Path,
    base_image: str,
    target: DeployTarget,
    cache: Path | None,
) -> Iterator[Wheelhouse]:
    """The build's wheelhouse in ``context`` while the context lasts (`tasks.wheelhouse`)."""
    with tempfile.TemporaryDirectory(prefix="slipway-wheelhouses-") as scratch:
        try:
            yield prepare_wheelhouse(
                client, context, base_image=base_image, target=target, cache=cache or Path(scratch)
            )
        finally:
            shutil.rmtree(context / WHEELHOUSE, ignore_errors=True)


def _engine_build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    target: DeployTarget,
    what: str,
    timeout: float,
) -> Image:
    """One build by the engine, its RUN steps on the target's build network (none)."""
    from docker.errors import APIError, DockerException
    from docker.errors import BuildError as DockerBuildError

    try:
        image, _ = client.images.build(
            path=str(context),
            tag=tag,
            buildargs=buildargs,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode=target.build_network,
            timeout=int(timeout),
        )
    except DockerBuildError as e:
        lines = [str(item.get("stream") or item.get("error") or "") for item in e.build_log]
        raise BuildError(
            f"{what} did not build: {e.msg}\n{tail_lines(''.join(lines))}",
            hint=_NO_NETWORK_HINT,
        ) from e
    except (APIError, DockerException) as e:
        raise BuildError(f"the engine refused to build {tag}: {e}") from e
    return image


def ensure_image(client: docker.DockerClient, reference: str) -> Image:
    """The image ``<repo>@sha256:...`` on the engine, pulled from its registry when missing.

    Raises:
        DeployError: The registry does not have it (any more) or cannot be reached.
    """
    from docker.errors import DockerException, ImageNotFound

    from slipway.errors import DeployError

    try:
        return client.images.get(reference)
    except ImageNotFound:
        pass
    repository, _, digest = reference.partition("@")
    run_logger(__name__).info("Pulling %s", reference)
    try:
        return client.images.pull(repository, tag=digest)
    except DockerException as e:
        raise DeployError(
            f"could not pull {reference}: {e}",
            hint="check the registry is up; a digest it no longer has must be rebuilt",
        ) from e


def remove_image(client: docker.DockerClient, tag: str) -> None:
    """Remove a tag that must not stay behind, e.g. of an image whose tests failed."""
    from docker.errors import DockerException

    try:
        client.images.remove(tag, noprune=False)
    except DockerException as e:
        run_logger(__name__).warning("Could not remove image %s: %s", tag, e)


@contextmanager
def removed_unless_pushed(client: docker.DockerClient, built: BuiltImage) -> Iterator[None]:
    """Remove the tags this run's build made, when the block ends with the registry not holding it.

    A build whose tests fail, that runs already, or whose push fails must not
    stay tagged as the service's image; whatever ended the block. A reused
    earlier build keeps the tags it had.
    """
    try:
        yield
    finally:
        if not built.reused and not _pushed(client, built):
            for tag in (built.tag, built.inputs_tag):
                if tag is not None:
                    remove_image(client, tag)


def _pushed(client: docker.DockerClient, built: BuiltImage) -> bool:
    """Whether the engine knows a digest of ``built`` in its repository: a push stored it."""
    from docker.errors import DockerException

    try:
        image = client.images.get(built.image_id)
    except DockerException:
        return False
    return bool(repo_digest(image, built.tag.rpartition(":")[0]))
