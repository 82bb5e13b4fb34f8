"""What an image is made of: the inputs of its build, and the content a container of it runs.

Two digests key what need not happen twice. `build_inputs_digest` covers
everything a build depends on (commit, build arguments, base images, the
wheelhouse): an earlier build of the same inputs, found by its
``inputs-<digest>`` tag, is what building again would give. `content_digest`
covers what a container runs (layers and runtime configuration, not labels):
two builds of one commit share it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING

from slipway.errors import BuildError
from slipway.run_log import run_logger

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

__all__ = [
    "LABEL_BUILT",
    "LABEL_REVISION",
    "build_inputs_digest",
    "built_at",
    "built_before",
    "content_digest",
    "repo_digest",
    "tag_image",
]

LABEL_REVISION = "org.opencontainers.image.revision"
"""OCI label holding the git sha an image was built from."""
LABEL_BUILT = "org.opencontainers.image.created"
"""OCI label holding the build time, RFC 3339 in UTC."""


_FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?$", re.I)


_ARG = re.compile(r"^ARG\s+(?P<name>\w+)(?:=(?P<default>\S*))?$", re.I)


_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)\}|(?P<bare>\w+))")


def build_inputs_digest(
    client: docker.DockerClient,
    dockerfile: str,
    *,
    sha: str,
    buildargs: dict[str, str],
    extra: dict[str, str] | None = None,
) -> str | None:
    """A digest of everything a build of commit ``sha`` depends on, or None when it is not known.

    The commit fixes the Dockerfile and the build context; beyond it a build
    depends only on its build arguments and on the images its ``FROM`` lines
    name, which a tag can move. So the digest covers the commit, the
    arguments, the engine's id of each base image and ``extra`` (the
    wheelhouse and the build network). An image tagged with
    it (`INPUTS_TAG_PREFIX`) is what building again would give from the
    layer cache, without sending the context and replaying each step (about
    a quarter of a second for the template). None, so the build runs, when a ``FROM`` line
    is beyond this simple reading (a variable with a modifier, a line
    continuation) or names an image the engine does not hold.
    """
    from docker.errors import DockerException

    arguments: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    after_from = False  # only the arguments declared before the first FROM reach FROM lines
    lines = [line.strip() for line in dockerfile.splitlines()]
    if any(line.endswith("\\") for line in lines if line.upper().startswith(("FROM", "ARG"))):
        return None
    for line in lines:
        if not after_from and (arg := _ARG.match(line)):
            name = arg["name"]
            arguments[name] = buildargs.get(name, arg["default"] or "")
        elif found := _FROM.match(line):
            after_from = True
            image = _substituted(found["image"], arguments)
            if image is None:
                return None
            if image.lower() != "scratch" and image.lower() not in stages:
                bases.append(image)
            if found["stage"]:
                stages.add(found["stage"].lower())
    if not bases:
        return None
    try:
        ids = [str(client.images.get(base).id) for base in bases]
    except DockerException:
        return None
    inputs = {"commit": sha, "buildargs": buildargs, "bases": ids, **(extra or {})}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _substituted(image: str, arguments: dict[str, str]) -> str | None:
    """``image`` with its ``$NAME`` and ``${NAME}`` filled in; None when one is not a known argument."""
    unknown: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in arguments:
            unknown.append(name)
        return arguments.get(name, "")

    filled = _VARIABLE.sub(value, image)
    return None if unknown or "$" in filled or not filled else filled


def built_before(
    client: docker.DockerClient, inputs_tag: str, *, tag: str, sha: str
) -> Image | None:
    """The image an earlier build of the same inputs left, now also tagged ``tag``; None when gone."""
    from docker.errors import DockerException, ImageNotFound

    try:
        image = client.images.get(inputs_tag)
    except ImageNotFound:
        return None
    except DockerException as e:
        run_logger(__name__).warning(
            "Could not look for an earlier build of %s: %s; building", sha[:12], e
        )
        return None
    if image.labels.get(LABEL_REVISION) != sha or LABEL_BUILT not in image.labels:
        return None  # not a build of ours: someone else tagged it
    if tag not in image.tags and not tag_image(image, tag):
        return None
    return image


def tag_image(image: Image, reference: str) -> bool:
    """Tag ``image`` as ``reference`` (``repository:tag``); False, logged, when the engine refuses."""
    from docker.errors import DockerException

    repository, _, name = reference.rpartition(":")
    try:
        return bool(image.tag(repository, tag=name))
    except DockerException as e:
        run_logger(__name__).warning("Could not tag %s as %s: %s", image.short_id, reference, e)
        return False


def built_at(image: Image) -> datetime:
    """When ``image`` was built: its build-time label, which every build of ours sets."""
    return datetime.fromisoformat(image.labels[LABEL_BUILT])


_RUNTIME_CONFIG = (
    *("Cmd", "Entrypoint", "Env", "WorkingDir", "User"),
    *("Healthcheck", "StopSignal", "ExposedPorts"),
)
"""The image configuration a container inherits; labels are not part of it."""


def content_digest(client: docker.DockerClient, image: str) -> str:
    """A digest of what a container of ``image`` runs, and nothing else.

    That is the image's filesystem layers and the runtime configuration a
    container inherits (command, entrypoint, environment, working directory,
    user, health check, stop signal, exposed ports). Labels are left out: the revision and build time differ between two
    builds whose images are otherwise identical, e.g. of a commit that only
    changed ``docs/``, or of the same commit built again.

    Raises:
        BuildError: The engine could not inspect ``image``, or it has no layers.
    """
    from docker.errors import DockerException

    try:
        attrs = client.images.get(image).attrs
    except DockerException as e:
        raise BuildError(f"could not inspect {image}: {e}") from e
    config = attrs.get("Config") or {}
    content = {
        "layers": (attrs.get("RootFS") or {}).get("Layers") or [],
        "config": {k: config.get(k) for k in _RUNTIME_CONFIG},
    }
    if not content["layers"]:
        raise BuildError(f"{image} reports no filesystem layers; its content cannot be keyed")
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def repo_digest(image: Image, repository: str) -> str:
    """The digest ``repository`` knows ``image`` by on the engine; empty when never pushed there."""
    for entry in image.attrs.get("RepoDigests") or []:
        name, _, digest = str(entry).partition("@")
        if name == repository:
            return digest
    return ""
