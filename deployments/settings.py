"""`slipway settings`: the platform settings a platform team changes from a shell.

The settings are the ``default`` Slipway Platform Settings block in the Prefect
server of a running `slipway up`; the UI edits every field of it. The base
image has a command of its own because changing it safely takes more than a
form: the image must be in the deploy target's engine (or be pulled into it)
before builds start FROM it.

    slipway settings base-image                    show it, and whether the engine has it
    slipway settings base-image IMAGE              check (pull if missing) and save
    slipway settings base-image IMAGE --no-check   save without looking at the engine
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from deployments.commands import use_running_platform
from slipway.errors import ConfigurationError
from slipway.home import SlipwayHome

__all__ = ["base_image"]


def base_image(
    home: SlipwayHome,
    image: str | None,
    *,
    check: bool = True,
    report: Callable[[str], None] = print,
) -> bool:
    """Show the platform's base image, or change it to ``image``.

    Returns:
        Whether the engine holds the image now (True after ``--no-check``).

    Raises:
        ComponentError: Slipway is not running on ``home``.
        ConfigurationError: ``image`` is not an image reference, or it is not in
            the engine and cannot be pulled; nothing is saved then.
        DockerUnavailable: checking was asked for and no engine answers.
    """
    use_running_platform(home)
    from blocks import DEFAULT_DOCUMENT, Defaults, DeployTarget, PlatformSettings
    from tasks.base_image import check_base_image, ensure_base_image

    loaded = Defaults(DeployTarget, PlatformSettings)
    target, settings = loaded[DeployTarget], loaded[PlatformSettings]
    if image is None:
        health = check_base_image(target, settings.base_image)
        state = "present" if health.healthy else health.detail
        report(f"base image: {settings.base_image} ({state})")
        return health.healthy
    try:
        PlatformSettings(base_image=image)
    except ValidationError as e:
        raise ConfigurationError(
            f"{image!r} is not an image reference",
            hint="give it as NAME[:TAG] or NAME@sha256:DIGEST, e.g. local/python-base:bookworm",
        ) from e
    if check and ensure_base_image(target, image):
        report(f"pulled {image} into the Docker engine at {target.docker_host}")
    previous = settings.base_image
    settings.base_image = image
    settings.save(DEFAULT_DOCUMENT, overwrite=True)
    report(
        f"base image: {previous} -> {image}. New builds start FROM it; running services "
        "keep theirs until their next deploy."
    )
    return True
