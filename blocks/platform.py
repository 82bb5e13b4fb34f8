"""Platform-wide settings that belong to no single external system."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator

from blocks.base import SlipwayBlock
from slipway.home import Ports, SlipwayHome

__all__ = ["DEFAULT_BASE_IMAGE", "LOCAL_BASE_IMAGE", "PlatformSettings", "SeverityName"]

DEFAULT_BASE_IMAGE = "python:3.12-slim"
"""What service images build FROM unless the platform team says otherwise."""

LOCAL_BASE_IMAGE = "local/python-base:bookworm"
"""The Debian 12 image with python3 that `make setup` builds where Docker Hub is out of reach."""

SeverityName = Literal["critical", "high", "medium", "low", "unknown"]
"""A finding severity as the security gate settings name it."""


class PlatformSettings(SlipwayBlock):
    """Settings every flow shares, including the security gate's policy.

    The ``gate_*`` fields are the policy `tasks.scanners.gate.enforce_gate`
    applies before a deployment to prod.

    Example:
        ```python
        from blocks import PlatformSettings
        settings = PlatformSettings.load("default")
        ```
    """

    _block_type_name = "Slipway Platform Settings"
    _block_type_slug = "slipway-platform-settings"

    base_image: str = Field(
        default=DEFAULT_BASE_IMAGE,
        title="Base image",
        description="Passed to service Dockerfiles as the BASE_IMAGE build argument.",
    )
    health_timeout_seconds: float = Field(
        default=30.0,
        title="Health timeout",
        description="How long a new deployment may take to answer /healthz before it is rolled back.",
        gt=0,
    )

    gate_block_new_severities: list[SeverityName] = Field(
        default_factory=lambda: list[SeverityName](["critical", "high"]),
        title="Gate: block new findings of",
        description="The prod gate refuses a commit with a new, unaccepted finding of these severities.",
    )
    gate_block_open_severities: list[SeverityName] = Field(
        default_factory=list,
        title="Gate: block any open finding of",
        description="The prod gate refuses a commit with any unaccepted finding of these severities, new or not.",
    )
    gate_block_known_exploited: bool = Field(
        default=True,
        title="Gate: block known-exploited dependencies",
        description="Refuse a commit whose dependencies have an advisory in CISA's known-exploited catalog.",
    )
    gate_block_errored_scans: bool = Field(
        default=True,
        title="Gate: block errored scans",
        description="Refuse a commit for which a scanner crashed, timed out or could not run.",
    )
    scan_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        title="Scanner timeout",
        description="Seconds each security scanner may run before it is killed and its scan errored.",
    )
    reuse_test_results: bool = Field(
        default=True,
        title="Reuse test results",
        description="Skip the tests of an image identical (layers, runtime configuration) to one "
        "whose tests passed, e.g. after a docs-only commit; the tests artifact names that commit.",
    )
    nightly_scan_concurrency: int = Field(
        default=2,
        ge=1,
        le=32,
        title="Nightly scan concurrency",
        description="How many services the nightly security scan scans at the same time.",
    )

    @field_validator("base_image")
    @classmethod
    def _image_has_no_spaces(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("-"):
            raise ValueError(f"base_image {value!r} is not an image reference")
        return value

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """``$SLIPWAY_BASE_IMAGE`` when set, else ``python:3.12-slim``.

        Which image this machine's engine holds is a question for the engine:
        `slipway up` asks it (`tasks.base_image.local_base_image`) when it
        writes these settings for a new platform.
        """
        import os

        return cls(
            base_image=os.environ.get("SLIPWAY_BASE_IMAGE", "").strip() or DEFAULT_BASE_IMAGE
        )
