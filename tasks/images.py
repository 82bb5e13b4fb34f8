"""Service images on the deploy target's Docker engine: build, test inside, push.

An image is tagged ``<registry>/<service>:<sha>`` and carries the commit and
its build time as labels. Its ``RUN`` steps have no network (the deploy
target's ``build_network``): build-time dependencies come from the
wheelhouse the platform fetched into the context (`tasks.wheelhouse`). Its
tests run inside the image itself, confined as every service container is
(`tasks.containers.confinement`) and with no network, so what passes is
exactly what ships. A push is retried with back-off, because a registry that
restarts is the common failure, and the digest it answers with is what every
deployment refers to from then on.

Every name that reaches Docker is checked first (`check_image_inputs`), so a
service, a sha or a registry can never become a flag or an unexpected ref.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from blocks.deploy_target import DeployTarget
from slipway.errors import BuildError, InvalidRequest
from slipway.names import check_dns_label, check_host_port, check_sha
from tasks.containers import LOG_CONFIG, confinement
from tasks.wheelhouse import WHEELHOUSE, Wheelhouse, prepare_wheelhouse

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

    from blocks.container_registry import ContainerRegistry

__all__ = [
    "INPUTS_TAG_PREFIX",
    "LABEL_BUILT",
    "LABEL_REVISION",
    "PUSH_ATTEMPTS",
    "TEST_COMMAND",
    "BuiltImage",
    "PushedImage",
    "TestCase",
    "TestReport",
    "content_digest",
    "build_image",
    "build_inputs_digest",
    "describe_report",
    "ensure_image",
    "image_repository",
    "push_image",
    "remove_image",
    "run_image_tests",
    "test_inputs_digest",
]

LABEL_REVISION = "org.opencontainers.image.revision"
"""OCI label holding the git sha an image was built from."""
LABEL_BUILT = "org.opencontainers.image.created"
"""OCI label holding the build time, RFC 3339 in UTC."""
INPUTS_TAG_PREFIX = "inputs-"
"""An image's second local tag, ``<repository>:inputs-<build_inputs_digest>``, by which a
later build of the same inputs finds it. A tag, not a label: the engine's classic builder
adds each label as a build step of its own, about a tenth of a second each."""
TEST_COMMAND = ("python3", "-m", "unittest", "-v")
"""What runs a service's tests inside its image: the template's tests need only the stdlib."""
_TEST_NETWORK = "none"
_TEST_ENVIRONMENT = {"PYTHONDONTWRITEBYTECODE": "1"}
_CONFINED = "confined-1"
"""Part of the test inputs: a run of the confined tests never reuses an unconfined one's."""
_NO_NETWORK_HINT = (
    "fix the Dockerfile or the step above, then push again; RUN steps have no network: "
    "Python dependencies come from requirements.txt through the platform's wheelhouse "
    f"({WHEELHOUSE}/, see the python-service template)"
)
PUSH_ATTEMPTS = 4
"""Pushes are tried this often, waiting 1, 2, 4 ... seconds in between."""
PUSH_BACKOFF_SECONDS = 1.0

_CASE = re.compile(
    r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?: \.\.\.|\n.*?\.\.\.) "
    r"(?P<result>ok|FAIL|ERROR|skipped|expected failure|unexpected success)",
    re.MULTILINE,
)
_RESULTS = {"ok": "passed", "FAIL": "failed", "ERROR": "error", "skipped": "skipped"}


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task, so the UI shows it; the module's outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


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


@dataclass(frozen=True)
class TestCase:
    """One test of the service, as its runner reported it."""

    name: str
    """``module.Class.test_name``."""
    result: str
    """``passed``, ``failed``, ``error``, ``skipped`` or the runner's own word."""


@dataclass(frozen=True)
class TestReport:
    """What running a service's tests inside its image gave."""

    passed: bool
    """Whether the run exited 0 and ran at least one test."""
    exit_code: int
    """The test command's exit code (-1 when it was killed after its timeout)."""
    cases: tuple[TestCase, ...]
    """Each test with its result, in the order they ran."""
    tail: str
    """The last lines of the output, where a failure's cause is."""
    seconds: float
    """How long the run took."""
    reused_from: str | None = None
    """The commit whose identical image ran these tests, when they were not run again."""

    def rows(self) -> list[dict[str, str]]:
        """The report as table-artifact rows: one per test."""
        return [{"test": c.name, "result": c.result} for c in self.cases]


def image_repository(registry: ContainerRegistry, service: str) -> str:
    """``<registry>/<service>``, the repository every image of ``service`` goes to."""
    return f"{check_host_port(registry.url)}/{check_dns_label(service, what='service')}"


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
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(
            f"{service} has no Dockerfile at the root of commit {sha[:12]}",
            hint="add a Dockerfile (the python-service template has one)",
        )
    target = target or DeployTarget()
    tag = f"{repository}:{sha}"
    buildargs = {"BASE_IMAGE": base_image}
    began = time.monotonic()
    with _wheelhouse_in(client, context, base_image, target, wheelhouses) as wheels:
        extra = {"wheelhouse": wheels.key, "network": target.build_network}
        text = dockerfile.read_text()
        inputs = build_inputs_digest(client, text, sha=sha, buildargs=buildargs, extra=extra)
        inputs_tag = f"{repository}:{INPUTS_TAG_PREFIX}{inputs}" if inputs else None
        earlier = _built_before(client, inputs_tag, tag=tag, sha=sha) if inputs_tag else None
        if earlier is not None:
            built_at = _built_at(earlier)
            _log().info(
                "Reused %s (%s), built from the same commit, arguments and base images at %s",
                *(tag, earlier.short_id, built_at.isoformat()),
            )
            seconds = time.monotonic() - began
            return BuiltImage(
                *(service, sha, tag, str(earlier.id), built_at, seconds),
                reused=True,
                inputs_tag=inputs_tag,
            )
        built_at = datetime.now(UTC).replace(microsecond=0)
        labels = {LABEL_REVISION: sha, LABEL_BUILT: built_at.isoformat()}
        _log().info("Building %s from %s on %s", tag, sha[:12], base_image)
        what = f"the image of {service} at {sha[:12]}"
        image = _engine_build(client, context, tag, buildargs, labels, target, what, timeout)
    if inputs_tag is not None and not _tag(image, inputs_tag):
        inputs_tag = None
    seconds = time.monotonic() - began
    _log().info("Built %s (%s) in %.1f s", tag, image.short_id, seconds)
    return BuiltImage(service, sha, tag, str(image.id), built_at, seconds, inputs_tag=inputs_tag)


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
            f"{what} did not build: {e.msg}\n{_tail(''.join(lines))}",
            hint=_NO_NETWORK_HINT,
        ) from e
    except (APIError, DockerException) as e:
        raise BuildError(f"the engine refused to build {tag}: {e}") from e
    return image


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


def _built_before(
    client: docker.DockerClient, inputs_tag: str, *, tag: str, sha: str
) -> Image | None:
    """The image an earlier build of the same inputs left, now also tagged ``tag``; None when gone."""
    from docker.errors import DockerException, ImageNotFound

    try:
        image = client.images.get(inputs_tag)
    except ImageNotFound:
        return None
    except DockerException as e:
        _log().warning("Could not look for an earlier build of %s: %s; building", sha[:12], e)
        return None
    if image.labels.get(LABEL_REVISION) != sha or LABEL_BUILT not in image.labels:
        return None  # not a build of ours: someone else tagged it
    if tag not in image.tags and not _tag(image, tag):
        return None
    return image


def _tag(image: Image, reference: str) -> bool:
    """Tag ``image`` as ``reference`` (``repository:tag``); False, logged, when the engine refuses."""
    from docker.errors import DockerException

    repository, _, name = reference.rpartition(":")
    try:
        return bool(image.tag(repository, tag=name))
    except DockerException as e:
        _log().warning("Could not tag %s as %s: %s", image.short_id, reference, e)
        return False


def _built_at(image: Image) -> datetime:
    """When ``image`` was built: its build-time label, which every build of ours sets."""
    return datetime.fromisoformat(image.labels[LABEL_BUILT])


@task(name="test-image", cache_policy=NO_CACHE)
def run_image_tests(
    client: docker.DockerClient,
    image: str,
    *,
    command: tuple[str, ...] = TEST_COMMAND,
    timeout: float = 300,
    target: DeployTarget | None = None,
) -> TestReport:
    """Run the service's tests inside ``image``, confined and with networking disabled.

    The container runs as every service container does (non-root, no
    capabilities, read-only root, the target's limits; its defaults when
    None) and is removed afterwards, whatever happened. A run that finds no
    test counts as failed: a service whose tests vanished must not ship.

    Raises:
        BuildError: the image asks for root (the message says how to fix the
            Dockerfile), or the engine could not start the tests.
    """
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    began = time.monotonic()
    try:
        confined = confinement(client, image, target or DeployTarget(), network_mode=_TEST_NETWORK)
    except InvalidRequest as e:
        raise BuildError(f"{e.message}: its tests were not run", hint=e.hint) from e
    try:
        container = client.containers.run(
            image,
            list(command),
            detach=True,
            environment=_TEST_ENVIRONMENT,
            labels={"dev.slipway.purpose": "tests"},
            **confined.options(),
            log_config=LOG_CONFIG,  # rotated by the engine (tasks.containers)
        )
    except DockerException as e:
        raise BuildError(f"the tests of {image} could not start: {e}") from e
    try:
        try:
            exit_code = int(container.wait(timeout=timeout)["StatusCode"])
        except RequestException:
            exit_code = -1  # timed out (the engine's API reports it so): killed below
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    cases = tuple(
        TestCase(f"{m['where']}", _RESULTS.get(m["result"], m["result"]))
        for m in _CASE.finditer(output)
    )
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    count = int(ran.group(1)) if ran else len(cases)
    tail = _tail(output) if exit_code != -1 else f"killed after {timeout:.0f} s\n{_tail(output)}"
    report = TestReport(
        passed=exit_code == 0 and count > 0,
        exit_code=exit_code,
        cases=cases,
        tail=tail if count > 0 else f"no tests ran\n{tail}",
        seconds=time.monotonic() - began,
    )
    _log().info(
        "Tests of %s: %s (%d cases, exit %d)",
        image,
        "passed" if report.passed else "FAILED",
        count,
        exit_code,
    )
    return report


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


def test_inputs_digest(
    client: docker.DockerClient, image: str, *, command: tuple[str, ...] = TEST_COMMAND
) -> str:
    """A digest of everything a test run inside ``image`` depends on, and nothing else.

    That is the image's `content_digest`, the test command and how the
    container runs: two images that differ only in their labels share it.
    """
    inputs = {
        "content": content_digest(client, image),
        "command": list(command),
        "run": {"network": _TEST_NETWORK, "environment": _TEST_ENVIRONMENT, "how": _CONFINED},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


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
            _log().warning(
                "Push of %s failed (attempt %d of %d): %s; retrying in %.0f s",
                built.tag,
                attempt,
                attempts,
                last,
                delay,
            )
            time.sleep(delay)
            continue
        _log().info("Pushed %s as %s@%s", built.tag, repository, digest)
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
        digest = _repo_digest(client.images.get(f"{repository}:{tag}"), repository)
    if not digest.startswith("sha256:"):
        raise BuildError(f"the registry answered no digest for {repository}:{tag}")
    return digest


def _repo_digest(image: Image, repository: str) -> str:
    for entry in image.attrs.get("RepoDigests") or []:
        name, _, digest = str(entry).partition("@")
        if name == repository:
            return digest
    return ""


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
    _log().info("Pulling %s", reference)
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
        _log().warning("Could not remove image %s: %s", tag, e)


def _tail(text: str, lines: int = 30) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def describe_report(report: TestReport) -> str:
    """A markdown summary of a test run, for the artifact's description."""
    counts: dict[str, int] = {}
    for case in report.cases:
        counts[case.result] = counts.get(case.result, 0) + 1
    summary = ", ".join(f"{n} {word}" for word, n in sorted(counts.items())) or "no test cases"
    verdict = "passed" if report.passed else "**failed**"
    reused = (
        f" Not run again: the image is identical to that of `{report.reused_from[:12]}`, "
        "whose run this is (same layers, runtime configuration and test command)."
        if report.reused_from
        else ""
    )
    return (
        f"Tests {verdict} in {report.seconds:.1f} s (exit {report.exit_code}): {summary}.{reused}\n\n"
        f"```text\n{report.tail}\n```"
    )
