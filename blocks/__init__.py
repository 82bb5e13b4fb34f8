"""The platform's configuration, as Prefect blocks: one per external system.

`slipway up` registers these block types with the Prefect server and writes a
``default`` document of each with local defaults when none exists. Platform
teams then edit them under Blocks in the Prefect UI.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Callable

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
    "BLOCK_TYPES_VARIABLE",
    "DEFAULT_DOCUMENT",
    "NESTED_BLOCKS",
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
    "register_block_types",
    "set_up_blocks",
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
    return set_up_blocks(None, None)[0]


def set_up_blocks(
    home: SlipwayHome | None,
    ports: Ports | None,
    *,
    base_image: Callable[[], str] | None = None,
) -> tuple[bool, list[SlipwayBlock]]:
    """`register_block_types`, and with a home, the missing default documents, in one round.

    A home gets a ``default`` document of each top-level block where none
    exists. Existing documents are never overwritten: they hold the platform team's
    choices. Which exist is one request (`default_documents`).

    Side by side, and each type once: a document's save registers its own type
    (Prefect's ``Block.save`` does), so a new home's types are registered by
    their saves. One after another, `up` on a new home waited on some 70
    round trips to a server that had just started.

    ``base_image``, asked only when the platform settings are written, gives
    the image a new platform builds from (`tasks.base_image.local_base_image`):
    the document is written with it at once, not saved a second time.

    Returns:
        Whether the types were registered, and the documents written: what a
        load of them would return now, so `up` need not read them back.
    """
    from prefect.variables import Variable

    wanted = block_types_digest()
    changed = Variable.get(BLOCK_TYPES_VARIABLE) != wanted
    documents = (
        _missing_defaults(home, ports, base_image) if home is not None and ports is not None else []
    )
    if changed or documents:
        asyncio.run(_register_and_save(documents, register=changed))
    if changed:
        Variable.set(BLOCK_TYPES_VARIABLE, wanted, overwrite=True)
    _log_written(documents)
    return changed, documents


NESTED_BLOCKS: tuple[type[SlipwayBlock], ...] = (S3Connection,)
"""The block types that others hold as fields: registered before those, which refer to them."""


async def _register_and_save(documents: list[SlipwayBlock], *, register: bool) -> None:
    """The nested types first, then every other type (with ``register``) beside the saves.

    The documents are saved one after another: saved at once, two of them
    made PostgreSQL answer 409 (a data integrity conflict) to one, and `up`
    on a new database failed.
    """
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for nested in NESTED_BLOCKS:
            await nested.aregister_type_and_schema(client=client)
        saved = {type(document) for document in documents}
        types = [t for t in ALL_BLOCKS if t not in NESTED_BLOCKS and t not in saved]

        async def save_each() -> None:
            for document in documents:
                await document.asave(DEFAULT_DOCUMENT, client=client)

        await asyncio.gather(
            *(t.aregister_type_and_schema(client=client) for t in (types if register else [])),
            save_each(),
        )


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


def _missing_defaults(
    home: SlipwayHome, ports: Ports, base_image: Callable[[], str] | None
) -> list[SlipwayBlock]:
    """The local default of each top-level block type without a ``default`` document."""
    # S3Connection is nested inside stores; it has no default document of its own.
    kinds = [kind for kind in ALL_BLOCKS if kind not in NESTED_BLOCKS]
    present = default_documents(kinds)
    missing = [
        kind.local_default(home, ports)
        for kind in kinds
        if kind.get_block_type_slug() not in present
    ]
    return [
        d.model_copy(update={"base_image": base_image()})
        if isinstance(d, PlatformSettings) and base_image is not None
        else d
        for d in missing
    ]


def _log_written(documents: list[SlipwayBlock]) -> None:
    for document in documents:
        logger.info(
            "wrote default block document %s/%s", document.get_block_type_slug(), DEFAULT_DOCUMENT
        )
