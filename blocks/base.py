"""What every Slipway configuration block shares.

Each block type has one document that the platform reads, named ``default``.
`slipway up` writes it with local defaults when it does not exist yet, and a
platform team edits it in the Prefect UI (Blocks) to point at real systems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self, TypeVar, cast

from prefect import get_client
from prefect.blocks.core import Block
from prefect.client.schemas.objects import BlockDocument

from slipway.errors import ConfigurationError
from slipway.home import Ports, SlipwayHome

__all__ = ["DEFAULT_DOCUMENT", "Defaults", "SlipwayBlock", "default_documents"]

DEFAULT_DOCUMENT = "default"
"""The block document name that flows load."""


class SlipwayBlock(Block):
    """Base of the platform's configuration blocks; not registered itself."""

    _documentation_url: ClassVar[str | None] = None  # type: ignore[assignment]

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """The document `slipway up` writes on a new home: everything on this machine."""
        raise NotImplementedError

    @classmethod
    def load_default(cls) -> Self:
        """Load the platform's document, or say how to create it."""
        try:
            block = cls.load(DEFAULT_DOCUMENT)
        except ValueError as e:
            raise _missing(cls, e) from e
        return cast(Self, block)


_B = TypeVar("_B", bound=SlipwayBlock)


class Defaults:
    """The default documents of several block types, read from Prefect in one request.

    A release needs five or six blocks. Loaded one by one, each is a round trip
    (about 40 ms against a local server), and a client of their own costs
    another 50 ms to open. One ``/block_documents/filter`` request on the
    calling flow's own client reads them all; each is then built as
    `Block.load` builds it.

    Args:
        kinds: The block types to load.

    Raises:
        ConfigurationError: A document does not exist.
    """

    def __init__(self, *kinds: type[SlipwayBlock]) -> None:
        wanted = {kind.get_block_type_slug(): kind for kind in kinds}
        documents = default_documents(kinds, include_secrets=True)
        self._loaded: dict[type[SlipwayBlock], SlipwayBlock] = {}
        for slug, kind in wanted.items():
            if slug not in documents:
                raise _missing(kind, ValueError(f"no document {DEFAULT_DOCUMENT!r} of {slug}"))
            # What `Block.load` does with the document it reads.
            self._loaded[kind] = kind._load_from_block_document(documents[slug])

    def __getitem__(self, kind: type[_B]) -> _B:
        """The loaded document of ``kind``; a type that was not asked for is a KeyError."""
        return cast(_B, self._loaded[kind])


def default_documents(
    kinds: Iterable[type[Block]], *, include_secrets: bool = False
) -> dict[str, BlockDocument]:
    """The ``default`` documents that exist of ``kinds``, by block type slug, in one request."""
    slugs = [kind.get_block_type_slug() for kind in kinds]
    body = {
        "block_types": {"slug": {"any_": slugs}},
        "block_documents": {"name": {"any_": [DEFAULT_DOCUMENT]}},
        "include_secrets": include_secrets,
        "limit": len(slugs),
    }
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/block_documents/filter", json=body)
    return {
        document.block_type.slug: document
        for document in (BlockDocument.model_validate(item) for item in response.json())
        if document.block_type is not None and document.name == DEFAULT_DOCUMENT
    }


def _missing(kind: type[SlipwayBlock], error: ValueError) -> ConfigurationError:
    slug = kind.get_block_type_slug()
    return ConfigurationError(
        f"block document '{slug}/{DEFAULT_DOCUMENT}' does not exist ({error})",
        hint="run `slipway up`, which writes local defaults, or create it under Blocks in the Prefect UI",
    )
