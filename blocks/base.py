"""What every Slipway configuration block shares.

Each block type has one document that the platform reads, named ``default``.
`slipway up` writes it with local defaults when it does not exist yet, and a
platform team edits it in the Prefect UI (Blocks) to point at real systems.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Self, TypeVar, cast

from prefect.blocks.core import Block

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
        slug = cls.get_block_type_slug()
        try:
            block = cls.load(DEFAULT_DOCUMENT)
        except ValueError as e:
            raise ConfigurationError(
                f"block document '{slug}/{DEFAULT_DOCUMENT}' does not exist",
                hint="run `slipway up`, which writes local defaults, or create it under Blocks in the Prefect UI",
            ) from e
        return cast(Self, block)


_B = TypeVar("_B", bound=SlipwayBlock)


class Defaults:
    """The default documents of several block types, read from Prefect at the same time.

    A release needs five or six blocks; one after another they cost a round
    trip each (about 30 ms against a local server), together about one.

    Args:
        kinds: The block types to load.

    Raises:
        ConfigurationError: A document does not exist (the first one found missing).
    """

    def __init__(self, *kinds: type[SlipwayBlock]) -> None:
        with ThreadPoolExecutor(
            max_workers=max(1, len(kinds)), thread_name_prefix="blocks"
        ) as pool:
            # Each load sees this thread's context: the flow run and its Prefect settings.
            futures = {
                k: pool.submit(contextvars.copy_context().run, k.load_default) for k in kinds
            }
            self._loaded: dict[type[SlipwayBlock], SlipwayBlock] = {
                k: f.result() for k, f in futures.items()
            }

    def __getitem__(self, kind: type[_B]) -> _B:
        """The loaded document of ``kind``; a type that was not asked for is a KeyError."""
        return cast(_B, self._loaded[kind])
