"""`register_block_types` registers again only when what it would send changed."""

from __future__ import annotations

from prefect.variables import Variable

from blocks import BLOCK_TYPES_VARIABLE, block_types_digest, register_block_types


def test_block_types_are_registered_once_until_their_digest_changes(prefect_server: str):
    Variable.set(BLOCK_TYPES_VARIABLE, "a digest of older block types", overwrite=True)
    assert register_block_types() is True
    assert Variable.get(BLOCK_TYPES_VARIABLE) == block_types_digest()
    assert register_block_types() is False  # unchanged: no call but the variable's read
