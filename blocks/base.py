"""What every Slipway configuration block shares.

Each block type has one document that the platform reads, named ``default``.
`slipway up` writes it with local defaults when it does not exist yet, and a
platform team edits it in the Prefect UI (Blocks) to point at real systems.
"""

from __future__ import annotations

from typing import ClassVar, Self, cast

from prefect.blocks.core import Block

from slipway.errors import ConfigurationError
from slipway.home import Ports, SlipwayHome

__all__ = ["DEFAULT_DOCUMENT", "SlipwayBlock"]

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
