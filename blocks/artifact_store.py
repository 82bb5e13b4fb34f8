"""Where reports, SBOMs and published docs are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from blocks.base import SlipwayBlock
from blocks.s3 import S3Connection, check_bucket_name
from slipway.home import Ports, SlipwayHome

__all__ = ["ArtifactStore"]


class ArtifactStore(SlipwayBlock):
    """A local directory, or an S3 bucket on any endpoint.

    Keys are ``/``-separated paths such as ``payments/3f2a.../scan.sarif``;
    both kinds lay them out identically, so docs published to one can be
    copied to the other unchanged.

    Example:
        ```python
        from blocks import ArtifactStore
        store = ArtifactStore.load("default")
        ```
    """

    _block_type_name = "Slipway Artifact Store"
    _block_type_slug = "slipway-artifact-store"

    kind: Literal["local", "s3"] = Field(
        default="local", title="Kind", description="'local' directory or 's3' bucket."
    )
    local_path: Path | None = Field(
        default=None, title="Directory", description="Root directory of a local store."
    )
    bucket: str | None = Field(default=None, title="Bucket", description="Bucket of an S3 store.")
    prefix: str = Field(
        default="", title="Key prefix", description="Prepended to every key, e.g. 'slipway/'."
    )
    s3: S3Connection | None = Field(
        default=None, title="S3 connection", description="Endpoint and credentials of an S3 store."
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_is_relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"prefix {value!r} must be relative and must not contain '..'")
        return value

    @model_validator(mode="after")
    def _kind_has_what_it_needs(self) -> Self:
        if self.kind == "local":
            if self.local_path is None or not self.local_path.is_absolute():
                raise ValueError("a local store needs `local_path`, an absolute directory path")
        else:
            if self.bucket is None:
                raise ValueError("an s3 store needs `bucket`")
            check_bucket_name(self.bucket)
        return self

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """A directory under the data directory."""
        return cls(kind="local", local_path=home.artifacts)
