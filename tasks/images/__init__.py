"""Service images on the deploy target's Docker engine: build, test inside, push.

- `build`: the image of one commit, with the layer cache and no network; an
  earlier build of the same inputs is tagged again instead (`build_image`);
- `inputs`: what a build depends on and what a container runs, as digests;
- `suite`: the service's tests, run inside its image, confined and with no
  network (`run_image_tests`);
- `push`: the push to the registry, retried, and the digest it answers with.
"""

from __future__ import annotations

from tasks.images.build import (
    INPUTS_TAG_PREFIX,
    BuiltImage,
    build_image,
    ensure_image,
    image_repository,
    remove_image,
    removed_unless_pushed,
)
from tasks.images.inputs import LABEL_BUILT, LABEL_REVISION, build_inputs_digest, content_digest
from tasks.images.push import PUSH_ATTEMPTS, PushedImage, push_image
from tasks.images.suite import (
    TEST_COMMAND,
    TestCase,
    TestReport,
    describe_report,
    run_image_tests,
    test_inputs_digest,
)

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
    "build_image",
    "build_inputs_digest",
    "content_digest",
    "describe_report",
    "ensure_image",
    "image_repository",
    "push_image",
    "remove_image",
    "removed_unless_pushed",
    "run_image_tests",
    "test_inputs_digest",
]
