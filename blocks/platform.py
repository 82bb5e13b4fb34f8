"""Platform-wide settings that belong to no single external system."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator

from blocks.base import SlipwayBlock
from slipway.home import Ports, SlipwayHome

__all__ = ["DEFAULT_BASE_IMAGE", "PlatformSettings"]

DEFAULT_BASE_IMAGE = "python:3.12-slim"
"""What service images build FROM unless the platform team says otherwise."""


class PlatformSettings(SlipwayBlock):
    """Settings every flow shares.

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

    @field_validator("base_image")
    @classmethod
    def _image_has_no_spaces(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("-"):
            raise ValueError(f"base_image {value!r} is not an image reference")
        return value

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """``python:3.12-slim``, or ``$SLIPWAY_BASE_IMAGE`` where that image is built locally."""
        import os

        return cls(base_image=os.environ.get("SLIPWAY_BASE_IMAGE", DEFAULT_BASE_IMAGE))
