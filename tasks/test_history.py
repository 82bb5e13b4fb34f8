"""Passed test runs in the artifact store, so an identical image is not tested twice.

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

import logging

from pydantic import BaseModel, ValidationError

from slipway.errors import ObjectNotFound, StorageError
from slipway.names import check_dns_label
from tasks.images import TestCase, TestReport
from tasks.storage import ObjectStore

__all__ = ["load_passed_tests", "save_passed_tests"]

logger = logging.getLogger(__name__)


class _Record(BaseModel):
    """What is stored: the report, and the commit whose image it ran in."""

    sha: str
    exit_code: int
    cases: tuple[TestCase, ...]
    tail: str
    seconds: float


def _key(service: str, digest: str) -> str:
    check_dns_label(service, what="service")
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
