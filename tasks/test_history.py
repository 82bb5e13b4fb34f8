"""An image's tests, run once per identical image: passed runs are kept in the artifact store.

A commit that changes nothing the image contains (only ``docs/``, say) builds
an image with the same layers and runtime configuration as the one before it;
only its labels differ. Its tests would run the same code in the same
filesystem, so build-test-deploy takes the earlier run's report instead, and
the tests artifact says whose it is. The key is `tasks.images.test_inputs_digest`.

Layout: ``<service>/tests/<digest>.json``, one passed `TestReport` per key.
Only passes are kept: a failure is run again on the next push, in case it
was the machine's and not the code's.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ValidationError

from slipway.errors import BuildError, ObjectNotFound, StorageError
from slipway.names import ServiceName
from slipway.run_log import run_logger
from tasks.images import (
    BuiltImage,
    TestCase,
    TestReport,
    describe_report,
    run_image_tests,
    test_inputs_digest,
)
from tasks.storage import ObjectStore

if TYPE_CHECKING:
    from collections.abc import Callable

    import docker

    from blocks.deploy_target import DeployTarget

__all__ = ["load_passed_tests", "save_passed_tests", "verify_image"]

logger = logging.getLogger(__name__)


class _Record(BaseModel):
    """What is stored: the report, and the commit whose image it ran in."""

    sha: str
    exit_code: int
    cases: tuple[TestCase, ...]
    tail: str
    seconds: float


def _key(service: str, digest: str) -> str:
    ServiceName.parse(service)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{digest!r} is not a test-inputs digest")
    return f"{service}/tests/{digest}.json"


def load_passed_tests(store: ObjectStore, service: str, digest: str) -> TestReport | None:
    """The passed report of an image with these test inputs, or None when there is none.

    An unreadable record counts as none (the tests run again) and is logged;
    so does a store that cannot be read, since running the tests is always safe.
    """
    key = _key(service, digest)
    try:
        record = _Record.model_validate_json(store.get(key))
    except ObjectNotFound:
        return None
    except (StorageError, ValidationError) as e:
        logger.warning("Ignoring the stored test run %s, the tests run again: %s", key, e)
        return None
    return TestReport(
        passed=True,
        exit_code=record.exit_code,
        cases=record.cases,
        tail=record.tail,
        seconds=record.seconds,
        reused_from=record.sha,
    )


def save_passed_tests(
    store: ObjectStore, service: str, digest: str, report: TestReport, *, sha: str
) -> None:
    """Keep ``report`` for later images with the same test inputs; a failed one is not kept.

    A store that cannot be written only costs the next identical image a test
    run, so the error is logged, not raised.
    """
    if not report.passed or report.reused_from is not None:
        return
    record = _Record(
        sha=sha,
        exit_code=report.exit_code,
        cases=report.cases,
        tail=report.tail,
        seconds=report.seconds,
    )
    key = _key(service, digest)
    try:
        store.put(key, record.model_dump_json().encode(), content_type="application/json")
    except StorageError as e:
        logger.warning("Could not keep the test run %s: %s", key, e)


@task(name="verify-image", cache_policy=NO_CACHE)
def verify_image(
    client: docker.DockerClient,
    store: ObjectStore,
    built: BuiltImage,
    *,
    target: DeployTarget,
    reuse: bool,
    started: Callable[[], object] | None = None,
    hand_off: Callable[[Callable[[], object]], None] | None = None,
) -> TestReport:
    """The image's tests: an identical image's passed run when ``reuse`` finds one, else a run now.

    Either way the table of the run, each test with its result, becomes the
    artifact ``tests-<service>``. ``started`` is called once the tests'
    container runs, or at once when a passed run is reused. A passed run is
    kept for identical images and published through ``hand_off``, when
    given (`slipway.background.meanwhile`): the push need not wait for those
    two writes (20-30 ms). A failed run is published before the task fails.

    Raises:
        BuildError: The tests failed, or none ran; the report's tail says why.
    """
    digest = _test_inputs(client, built) if reuse else None
    report = load_passed_tests(store, built.service, digest) if digest else None
    if report is not None:
        if started is not None:
            started()
        run_logger(__name__).info(
            "Not running the tests of %s again: its image is identical to that of %s, "
            "whose tests passed",
            built.tag,
            str(report.reused_from)[:12],
        )
    else:
        report = run_image_tests(client, built.tag, target=target, started=started)
    publish = functools.partial(_publish, store, built, report, digest)
    if report.passed and hand_off is not None:
        hand_off(publish)  # in this task's context: the artifact is still the task's
    else:
        publish()
    if not report.passed:
        raise BuildError(
            f"the tests of {built.service} at {built.sha[:12]} failed; nothing was pushed or deployed:\n{report.tail}",
            hint="fix the tests (see the tests artifact) and push again",
        )
    return report


def _publish(store: ObjectStore, built: BuiltImage, report: TestReport, digest: str | None) -> None:
    """Keep a passed run of ``built`` for identical images (by ``digest``), and make its artifact."""
    if digest:
        save_passed_tests(store, built.service, digest, report, sha=built.sha)
    create_table_artifact(
        table=report.rows() or [{"test": "(none)", "result": "no tests ran"}],
        key=f"tests-{built.service}",
        description=f"`{built.service}` at `{built.sha[:12]}`: " + describe_report(report),
    )


def _test_inputs(client: docker.DockerClient, built: BuiltImage) -> str | None:
    """The image's test-inputs digest, or None (the tests simply run) when it cannot be read."""
    try:
        return test_inputs_digest(client, built.image_id)
    except BuildError as e:
        run_logger(__name__).warning("Running the tests: %s", e.message)
        return None
