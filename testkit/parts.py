"""The parts a test or bench needs from the machine, and what happens when one is missing.

A part (Docker, the base image, the registry, Prometheus...) that a test
needs and the machine lacks skips the test locally and fails it under CI
(``CI=true``): CI never passes with a part silently missing, and
`make setup` installs them all.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["BASE_IMAGE", "in_ci", "missing_part"]

BASE_IMAGE = os.environ.get("SLIPWAY_BASE_IMAGE", "local/python-base:bookworm")
"""What test images build FROM: `make setup` builds the local one where Docker Hub is out of reach."""


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI=true``), where every part must be there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_part(what: str, *, fix: str) -> NoReturn:
    """Stop a test that needs a part this machine lacks: skipped locally, failed under CI.

    Args:
        what: The missing part and how it was looked for.
        fix: How to get it.
    """
    message = f"{what}. Fix: {fix}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing part fails the test, it is never skipped)")
    pytest.skip(message)
