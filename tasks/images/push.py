"""Pushing a built image to the registry, retried, and the digest it is known by from then on.

A push is retried with back-off, because a registry that restarts is the
common failure, and the digest it answers with is what every deployment
refers to from then on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.errors import BuildError
from slipway.run_log import run_logger
from tasks.images.inputs import repo_digest

if TYPE_CHECKING:
    import docker

    from blocks.container_registry import ContainerRegistry
    from tasks.images.build import BuiltImage

__all__ = ["PUSH_ATTEMPTS", "PUSH_BACKOFF_SECONDS", "PushedImage", "push_image"]

PUSH_ATTEMPTS = 4
"""Pushes are tried this often, waiting 1, 2, 4 ... seconds in between."""
PUSH_BACKOFF_SECONDS = 1.0


@dataclass(frozen=True)
class PushedImage:
    """An image that the registry holds, addressed by its content digest."""

    repository: str
    """``<registry>/<service>``."""
    tag: str
    """The tag it was pushed as."""
    digest: str
    """The manifest digest the registry answered with, ``sha256:...``."""

    @property
    def reference(self) -> str:
        """``<registry>/<service>@sha256:...``: what deployments run, never a tag."""
        return f"{self.repository}@{self.digest}"


@task(name="push-image", cache_policy=NO_CACHE)
def push_image(
    client: docker.DockerClient,
    built: BuiltImage,
    *,
    registry: ContainerRegistry,
    attempts: int = PUSH_ATTEMPTS,
    backoff: float = PUSH_BACKOFF_SECONDS,
) -> PushedImage:
    """Push ``built`` and return the digest the registry stored it under.

    Retries with exponential back-off (``backoff``, twice that, ...) because a
    registry that is restarting or briefly overloaded is the usual failure.

    Raises:
        BuildError: Every attempt failed; carries the last error.
    """
    repository, _, tag = built.tag.rpartition(":")
    auth: dict[str, str] | None = None
    if registry.username is not None and registry.password is not None:
        auth = {"username": registry.username, "password": registry.password.get_secret_value()}
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            digest = _push_once(client, repository, tag, auth)
        except BuildError as e:
            last = e.message
            if attempt == attempts:
                break
            delay = backoff * 2 ** (attempt - 1)
            run_logger(__name__).warning(
                "Push of %s failed (attempt %d of %d): %s; retrying in %.0f s",
                built.tag,
                attempt,
                attempts,
                last,
                delay,
            )
            time.sleep(delay)
            continue
        run_logger(__name__).info("Pushed %s as %s@%s", built.tag, repository, digest)
        return PushedImage(repository=repository, tag=built.tag, digest=digest)
    raise BuildError(
        f"could not push {built.tag} after {attempts} attempts: {last}",
        hint=f"check that the registry {registry.url} is up (`slipway status`) and accepts pushes",
    )


def _push_once(
    client: docker.DockerClient, repository: str, tag: str, auth: dict[str, str] | None
) -> str:
    """One push; the engine reports failures inside its progress stream, not as an exception."""
    from docker.errors import DockerException

    digest = ""
    try:
        for item in client.images.push(
            repository, tag=tag, stream=True, decode=True, auth_config=auth
        ):
            if "error" in item or "errorDetail" in item:
                detail = item.get("errorDetail", {}).get("message") or item.get("error")
                raise BuildError(str(detail).strip())
            aux = item.get("aux") or {}
            digest = str(aux.get("Digest") or digest)
    except DockerException as e:
        raise BuildError(str(e)) from e
    if not digest:  # older engines: the image's repo digests know it
        digest = repo_digest(client.images.get(f"{repository}:{tag}"), repository)
    if not digest.startswith("sha256:"):
        raise BuildError(f"the registry answered no digest for {repository}:{tag}")
    return digest
