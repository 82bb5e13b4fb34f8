"""What the TerraformBackend block means to Terraform: a backend block and an environment.

Nothing secret is ever written to a file: the backend block carries locations
and switches only, and the S3 keys reach Terraform as ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` in the environment of its child process.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError

if TYPE_CHECKING:
    from blocks.s3 import S3Connection
    from blocks.terraform_backend import TerraformBackend

__all__ = [
    "BackendConfig",
    "child_environment",
    "cli_config",
    "ensure_state_bucket",
    "render_backend",
    "state_key",
]

logger = logging.getLogger(__name__)

_ENDPOINT_SKIPS = (
    "skip_credentials_validation",
    "skip_requesting_account_id",
    "skip_metadata_api_check",
    "skip_region_validation",
)
"""Checks that only AWS itself can answer; an S3-compatible endpoint fails them."""


@dataclass(frozen=True)
class BackendConfig:
    """The ``backend`` block of one environment's workspace."""

    kind: str
    """``local`` or ``s3``: Terraform's backend type."""
    settings: tuple[tuple[str, object], ...]
    """The block's arguments, in order; no credentials."""

    def as_json(self) -> str:
        """A ``.tf.json`` file holding the block, so no ``-backend-config`` is needed."""
        block = {"terraform": {"backend": {self.kind: dict(self.settings)}}}
        return json.dumps(block, indent=2, sort_keys=True) + "\n"


def _connection(backend: TerraformBackend) -> S3Connection:
    from blocks.s3 import S3Connection  # blocks import Prefect; keep this module light

    return backend.s3 if backend.s3 is not None else S3Connection()


def render_backend(backend: TerraformBackend, service: str, environment: str) -> BackendConfig:
    """One state per service and environment: a file under state_dir, or an S3 key."""
    if backend.kind == "local":
        if backend.state_dir is None:
            raise ConfigurationError("local Terraform state has no state_dir", hint=_EDIT)
        path = backend.state_dir / service / f"{environment}.tfstate"
        return BackendConfig("local", (("path", str(path)),))
    if backend.bucket is None:
        raise ConfigurationError("the S3 Terraform backend has no bucket", hint=_EDIT)
    s3 = _connection(backend)
    settings: list[tuple[str, object]] = [
        ("bucket", backend.bucket),
        ("key", state_key(backend.key_prefix, service, environment)),
        ("region", s3.region),
        ("use_lockfile", backend.use_lockfile),
        ("use_path_style", s3.path_style),
    ]
    if s3.endpoint_url:
        settings.append(("endpoints", {"s3": s3.endpoint_url}))
        settings.extend((skip, True) for skip in _ENDPOINT_SKIPS)
    return BackendConfig("s3", tuple(settings))


def state_key(prefix: str, service: str, environment: str) -> str:
    """``<prefix>/<service>/<environment>.tfstate``; the lock file is this plus ``.tflock``."""
    return "/".join(p for p in (prefix.strip("/"), service, f"{environment}.tfstate") if p)


_EDIT = "edit the slipway-terraform-backend block; its validation should have said so"


def cli_config(plugin_mirror: Path) -> str:
    """A CLI configuration that installs every provider from a filesystem mirror only.

    Without a ``direct`` method Terraform never tries the registry, which is what
    an air-gapped machine needs: a missing provider fails at once, by name.
    """
    path = json.dumps(str(plugin_mirror))  # a JSON string is a valid HCL string
    return f"provider_installation {{\n  filesystem_mirror {{\n    path = {path}\n  }}\n}}\n"


def child_environment(backend: TerraformBackend, *, cli_config_file: Path | None) -> dict[str, str]:
    """The environment of a Terraform child: Slipway's own, plus keys and switches.

    The S3 keys go here and nowhere else; when the connection has none, Terraform
    uses the same chain as boto3 (environment, profile, instance role).
    """
    env = dict(os.environ)
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    if cli_config_file is not None:
        env["TF_CLI_CONFIG_FILE"] = str(cli_config_file)
    if backend.kind == "s3":
        s3 = _connection(backend)
        env["AWS_REGION"] = s3.region
        if s3.access_key_id and s3.secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = s3.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
            env.pop("AWS_SESSION_TOKEN", None)  # belongs to other keys
            env.pop("AWS_PROFILE", None)
    return env


def ensure_state_bucket(backend: TerraformBackend) -> None:
    """Create the S3 state bucket with versioning when it is missing; local needs nothing.

    Versioning keeps every earlier state, so a bad apply can be rolled back.

    Raises:
        StorageError: the endpoint refused, with a fix hint.
    """
    if backend.kind != "s3" or backend.bucket is None:
        return
    from tasks.storage import S3Store

    store = S3Store(
        bucket=backend.bucket, prefix=backend.key_prefix, connection=_connection(backend)
    )
    store.ensure_bucket(versioning=True)
    logger.info("Terraform state bucket %s is ready, with versioning", backend.bucket)
