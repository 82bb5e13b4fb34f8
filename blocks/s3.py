"""How to reach an S3 endpoint: AWS, MinIO, LocalStack or moto."""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator

from blocks.base import SlipwayBlock
from slipway.home import Ports, SlipwayHome

__all__ = ["S3Connection", "check_bucket_name"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(value: str) -> str:
    """Refuse a name that S3 would refuse, before any request is made."""
    if not _BUCKET.fullmatch(value) or ".." in value:
        raise ValueError(
            f"bucket {value!r} is not a valid S3 bucket name "
            "(3-63 lower-case letters, digits, '.' and '-')"
        )
    return value


class S3Connection(SlipwayBlock):
    """Endpoint and credentials shared by the artifact store and Terraform state.

    Leave the keys empty to use boto3's own chain (environment, profile,
    instance role). Set ``endpoint_url`` for anything but AWS.

    Example:
        ```python
        from blocks import S3Connection
        s3 = S3Connection(endpoint_url="http://127.0.0.1:9000", path_style=True)
        ```
    """

    _block_type_name = "Slipway S3 Connection"
    _block_type_slug = "slipway-s3-connection"

    endpoint_url: str | None = Field(
        default=None,
        title="Endpoint URL",
        description="e.g. http://127.0.0.1:9000 for MinIO; empty for AWS.",
    )
    region: str = Field(default="us-east-1", title="Region", description="The bucket's region.")
    access_key_id: str | None = Field(
        default=None, title="Access key id", description="Empty to use boto3's credential chain."
    )
    secret_access_key: SecretStr | None = Field(
        default=None, title="Secret access key", description="Secret for `access_key_id`."
    )
    path_style: bool = Field(
        default=False,
        title="Path-style addressing",
        description="Needed by MinIO, LocalStack and moto; AWS uses virtual hosts.",
    )

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> Self:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both `access_key_id` and `secret_access_key`, or neither")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"endpoint_url {self.endpoint_url!r} must start with http:// or https://"
            )
        if self.endpoint_url is not None and "@" in self.endpoint_url.split("/", 3)[2]:
            # botocore logs the endpoint in full: credentials there would leak.
            raise ValueError("endpoint_url must not carry credentials; use the access key fields")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", ...)``."""
        from botocore.config import Config

        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key.get_secret_value()
        if self.path_style:
            kwargs["config"] = Config(s3={"addressing_style": "path"})
        return kwargs

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """AWS with boto3's credential chain; only used when a store is switched to S3."""
        return cls()
