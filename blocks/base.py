"""What every Slipway configuration block shares.

Each block type has one document that the platform reads, named ``default``.
`slipway up` writes it with local defaults when it does not exist yet, and a
platform team edits it in the Prefect UI (Blocks) to point at real systems.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Self, TypeVar, cast

from prefect import get_client
from prefect.blocks.core import Block
from prefect.utilities.asyncutils import run_coro_as_sync

from slipway.errors import ConfigurationError
from slipway.home import Ports, SlipwayHome

__all__ = ["DEFAULT_DOCUMENT", "Defaults", "SlipwayBlock"]

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
    """The default documents of several block types, read from Prefect at the same time.

    A release needs five or six blocks; one after another they cost a round
    trip each (about 30 ms against a local server), together about one. The
    reads share one async client of their own; the calling flow's client is
    not touched from other threads.

    Args:
        kinds: The block types to load.

    Raises:
        ConfigurationError: A document does not exist.
    """

    def __init__(self, *kinds: type[SlipwayBlock]) -> None:
        loaded = run_coro_as_sync(_load_all(kinds))
        self._loaded: dict[type[SlipwayBlock], SlipwayBlock] = dict(zip(kinds, loaded, strict=True))

    def __getitem__(self, kind: type[_B]) -> _B:
        """The loaded document of ``kind``; a type that was not asked for is a KeyError."""
        return cast(_B, self._loaded[kind])


async def _load_all(kinds: tuple[type[SlipwayBlock], ...]) -> list[SlipwayBlock]:
    async with get_client() as client:
        found = await asyncio.gather(
            *(kind.aload(DEFAULT_DOCUMENT, client=client) for kind in kinds),
            return_exceptions=True,
        )
    for kind, result in zip(kinds, found, strict=True):
        if isinstance(result, ValueError):
            raise _missing(kind, result) from result
        if isinstance(result, BaseException):
            raise result
    return [cast(SlipwayBlock, block) for block in found]


def _missing(kind: type[SlipwayBlock], error: ValueError) -> ConfigurationError:
    slug = kind.get_block_type_slug()
    return ConfigurationError(
        f"block document '{slug}/{DEFAULT_DOCUMENT}' does not exist ({error})",
        hint="run `slipway up`, which writes local defaults, or create it under Blocks in the Prefect UI",
    )
