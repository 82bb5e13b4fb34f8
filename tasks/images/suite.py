"""A service's test suite, run inside its own image: confined, with no network.

What passes is exactly what ships: the tests run in the image that is pushed
and released, confined as every service container is
(`tasks.containers.confinement`), in a container removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.deploy_target import DeployTarget
from slipway.errors import BuildError, InvalidRequest
from slipway.run_log import run_logger
from tasks.containers import LOG_CONFIG, confinement
from tasks.images.inputs import content_digest

if TYPE_CHECKING:
    from collections.abc import Callable

    import docker

__all__ = [
    "TEST_COMMAND",
    "TestCase",
    "TestReport",
    "describe_report",
    "run_image_tests",
    "tail_lines",
    "test_inputs_digest",
]

TEST_COMMAND = ("python3", "-m", "unittest", "-v")
"""What runs a service's tests inside its image: the template's tests need only the stdlib."""
_TEST_NETWORK = "none"
_TEST_ENVIRONMENT = {"PYTHONDONTWRITEBYTECODE": "1"}
_CONFINED = "confined-1"
"""Part of the test inputs: a run of the confined tests never reuses an unconfined one's."""

_CASE = re.compile(
    r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?: \.\.\.|\n.*?\.\.\.) "
    r"(?P<result>ok|FAIL|ERROR|skipped|expected failure|unexpected success)",
    re.MULTILINE,
)
_RESULTS = {"ok": "passed", "FAIL": "failed", "ERROR": "error", "skipped": "skipped"}


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


@task(name="test-image", cache_policy=NO_CACHE)
def run_image_tests(
    client: docker.DockerClient,
    image: str,
    *,
    command: tuple[str, ...] = TEST_COMMAND,
    timeout: float = 300,
    target: DeployTarget | None = None,
    started: Callable[[], object] | None = None,
) -> TestReport:
    """Run the service's tests inside ``image``, confined and with networking disabled.

    The container runs as every service container does (non-root, no
    capabilities, read-only root, the target's limits; its defaults when
    None) and is removed afterwards, whatever happened. A run that finds no
    test counts as failed: a service whose tests vanished must not ship.
    ``started`` is called once the engine has started the tests' container.

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
        if started is not None:
            started()
        try:
            exit_code = int(container.wait(timeout=timeout)["StatusCode"])
        except RequestException:
            exit_code = -1  # timed out (the engine's API reports it so): killed below
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return _report(image, output, exit_code, timeout=timeout, began=began)


def _report(image: str, output: str, exit_code: int, *, timeout: float, began: float) -> TestReport:
    """The report of a run of ``image``'s tests, read from the runner's output, and logged."""
    cases = tuple(
        TestCase(f"{m['where']}", _RESULTS.get(m["result"], m["result"]))
        for m in _CASE.finditer(output)
    )
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    count = int(ran.group(1)) if ran else len(cases)
    tail = (
        tail_lines(output)
        if exit_code != -1
        else f"killed after {timeout:.0f} s\n{tail_lines(output)}"
    )
    report = TestReport(
        passed=exit_code == 0 and count > 0,
        exit_code=exit_code,
        cases=cases,
        tail=tail if count > 0 else f"no tests ran\n{tail}",
        seconds=time.monotonic() - began,
    )
    run_logger(__name__).info(
        "Tests of %s: %s (%d cases, exit %d)",
        image,
        "passed" if report.passed else "FAILED",
        count,
        exit_code,
    )
    return report


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


def tail_lines(text: str, lines: int = 30) -> str:
    """The last ``lines`` non-empty lines of ``text``, where a failure's cause is."""
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
