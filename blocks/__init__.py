"""The platform's configuration, as Prefect blocks: one per external system.

`slipway up` registers these block types with the Prefect server and writes a
``default`` document of each with local defaults when none exists. Platform
teams then edit them under Blocks in the Prefect UI.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging

from blocks.artifact_store import ArtifactStore
from blocks.base import DEFAULT_DOCUMENT, Defaults, SlipwayBlock, default_documents
from blocks.container_registry import ContainerRegistry
from blocks.deploy_target import DeployTarget
from blocks.git_server import GitServer
from blocks.monitoring import MonitoringSettings
from blocks.platform import PlatformSettings
from blocks.s3 import S3Connection
from blocks.terraform_backend import TerraformBackend
from blocks.vulnerability_source import VulnerabilitySource
from slipway.home import Ports, SlipwayHome

__all__ = [
    "ALL_BLOCKS",
    "DEFAULT_DOCUMENT",
    "BLOCK_TYPES_VARIABLE",
    "ArtifactStore",
    "ContainerRegistry",
    "Defaults",
    "DeployTarget",
    "GitServer",
    "MonitoringSettings",
    "PlatformSettings",
    "S3Connection",
    "SlipwayBlock",
    "TerraformBackend",
    "VulnerabilitySource",
    "block_types_digest",
    "ensure_default_documents",
    "register_block_types",
]

logger = logging.getLogger(__name__)

ALL_BLOCKS: tuple[type[SlipwayBlock], ...] = (
    S3Connection,
    GitServer,
    ContainerRegistry,
    DeployTarget,
    ArtifactStore,
    TerraformBackend,
    VulnerabilitySource,
    PlatformSettings,
    MonitoringSettings,
)
"""Every block type, nested ones first so their schemas exist when referenced."""


BLOCK_TYPES_VARIABLE = "slipway_block_types"
"""The Prefect variable that holds a digest of the block types last registered."""


def register_block_types() -> bool:
    """Register every block type and schema with the Prefect server, unless done already.

    Registering takes some 30 API calls, at every `slipway up`. The digest of
    what was registered (schemas, descriptions, Prefect's version) is kept in
    a Prefect variable, in the same database as the types, so an unchanged
    platform skips the calls; a deleted type is registered again by the first
    document saved with it (Prefect's ``Block.save`` does that).

    Returns:
        Whether the types were registered.
    """
    from prefect.variables import Variable

    wanted = block_types_digest()
    if Variable.get(BLOCK_TYPES_VARIABLE) == wanted:
        return False
    for block_type in ALL_BLOCKS:
        block_type.register_type_and_schema()
    Variable.set(BLOCK_TYPES_VARIABLE, wanted, overwrite=True)
    return True


@functools.cache
def block_types_digest() -> str:
    """A digest of everything `register_block_types` sends to Prefect (the same all process long)."""
    import prefect

    described = [
        {
            "slug": t.get_block_type_slug(),
            "name": t.get_block_type_name(),
            "description": t.get_description(),
            "code_example": t.get_code_example(),
            "logo": str(getattr(t, "_logo_url", None)),
            "documentation": str(getattr(t, "_documentation_url", None)),
            "schema": t.model_json_schema(),
        }
        for t in ALL_BLOCKS
    ]
    text = json.dumps([prefect.__version__, described], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_default_documents(home: SlipwayHome, ports: Ports) -> list[str]:
    """Write a ``default`` document of each top-level block where none exists.

    Existing documents are never overwritten: they hold the platform team's
    choices. Which exist is one request (`default_documents`), as at every
    `slipway up` all do. Returns the slugs that were written.
    """
    # S3Connection is nested inside stores; it has no default document of its own.
    kinds = [kind for kind in ALL_BLOCKS if kind is not S3Connection]
    present = default_documents(kinds)
    written: list[str] = []
    for block_type in kinds:
        if block_type.get_block_type_slug() not in present:
            block_type.local_default(home, ports).save(DEFAULT_DOCUMENT)
            written.append(block_type.get_block_type_slug())
            logger.info("wrote default block document %s/%s", written[-1], DEFAULT_DOCUMENT)
    return written
