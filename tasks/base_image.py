"""The base image that service images build FROM: is it in the engine, and which one fits here.

Every service's Dockerfile starts ``FROM $BASE_IMAGE``, the platform settings'
``base_image``. Where Docker Hub cannot be reached, ``python:3.12-slim`` can
never be pulled, and every build would fail at its first line. So:

- `local_base_image` picks, for a new platform, an image this machine has:
  ``$SLIPWAY_BASE_IMAGE`` when set, else ``python:3.12-slim`` when present,
  else the local Debian 12 image that `make setup` builds where the pull fails
  (``local/python-base:bookworm``);
- `check_base_image` tells `slipway up` and `slipway status` whether the
  configured image is there, and how to fix it when it is not;
- `ensure_base_image` pulls a missing image, for `slipway settings base-image`.

Nothing here reaches a registry except `ensure_base_image`, which a person asks for.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from blocks.platform import DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE
from slipway.errors import ConfigurationError, DockerUnavailable
from slipway.health import ComponentHealth
from tasks.containers import docker_client

if TYPE_CHECKING:
    import docker

    from blocks.deploy_target import DeployTarget

__all__ = [
    "BASE_IMAGE_ENV",
    "check_base_image",
    "ensure_base_image",
    "image_present",
    "local_base_image",
]

BASE_IMAGE_ENV = "SLIPWAY_BASE_IMAGE"
"""The base image a new platform's settings get, when the platform team names one."""

SETTINGS_COMMAND = "slipway settings base-image"


def image_present(client: docker.DockerClient, image: str) -> bool:
    """Whether the engine holds ``image`` (by name, tag or digest)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def local_base_image(
    target: DeployTarget,
    *,
    candidates: tuple[str, ...] = (DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE),
) -> str:
    """The base image for a new platform's settings: one this machine can build from.

    ``$SLIPWAY_BASE_IMAGE`` when set; else the first of ``candidates``
    (``python:3.12-slim``, then ``local/python-base:bookworm``) that the engine
    holds; else the first, which a build pulls where its registry is reachable.
    """
    requested = os.environ.get(BASE_IMAGE_ENV, "").strip()
    if requested:
        return requested
    try:
        client = docker_client(target, timeout=10)
    except DockerUnavailable:
        return candidates[0]
    try:
        return next((image for image in candidates if image_present(client, image)), candidates[0])
    finally:
        client.close()


def check_base_image(target: DeployTarget, image: str) -> ComponentHealth:
    """Whether the target's engine holds ``image``, as `slipway status` shows it.

    Optional, like the engine itself: only builds need it. A missing image
    names the fix: the local image when this machine has it, else how to get one.
    """
    try:
        client = docker_client(target, timeout=5)
    except DockerUnavailable:
        return ComponentHealth(
            "base-image", image, False, "not checked: no Docker engine answers", required=False
        )
    from docker.errors import DockerException
    from requests import RequestException

    try:
        if image_present(client, image):
            return ComponentHealth("base-image", image, True, "in the engine", required=False)
        local = image != LOCAL_BASE_IMAGE and image_present(client, LOCAL_BASE_IMAGE)
    except (DockerException, RequestException) as e:  # a slow engine, or a name it refuses
        return ComponentHealth(
            "base-image",
            image,
            False,
            f"not checked: the Docker engine at {target.docker_host} did not look it up ({e}). "
            f"Fix: check the name with `{SETTINGS_COMMAND}`, or try again",
            required=False,
        )
    finally:
        client.close()
    fix = (
        f"`{SETTINGS_COMMAND} {LOCAL_BASE_IMAGE}` (built here by `make setup`), "
        f"or `docker pull {image}` where its registry is reachable"
        if local
        else f"`docker pull {image}` where its registry is reachable; without one, `make setup` "
        f"builds {LOCAL_BASE_IMAGE}, then `{SETTINGS_COMMAND} {LOCAL_BASE_IMAGE}`"
    )
    return ComponentHealth(
        "base-image",
        image,
        False,
        f"not in the Docker engine at {target.docker_host}, so service builds fail. Fix: {fix}",
        required=False,
    )


def ensure_base_image(target: DeployTarget, image: str, *, timeout: float = 300) -> bool:
    """Make sure the engine holds ``image``, pulling it when missing; returns whether it pulled.

    Raises:
        DockerUnavailable: no engine answers.
        ConfigurationError: the image is missing and cannot be pulled; names the fix.
    """
    from docker.errors import DockerException

    client = docker_client(target, timeout=timeout)
    try:
        if image_present(client, image):
            return False
        try:
            client.images.pull(image)
        except DockerException as e:
            reason = str(e).splitlines()[0][:300]
            raise ConfigurationError(
                f"{image} is not in the Docker engine at {target.docker_host} and cannot be "
                f"pulled: {reason}",
                hint=f"build or load it into the engine first (`make setup` builds "
                f"{LOCAL_BASE_IMAGE} without a registry), or pass --no-check",
            ) from e
        return True
    finally:
        client.close()
