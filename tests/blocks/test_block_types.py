"""`register_block_types` registers again only when what it would send changed."""

from __future__ import annotations

from prefect.variables import Variable

from blocks import BLOCK_TYPES_VARIABLE, block_types_digest, register_block_types


def test_block_types_are_registered_once_until_their_digest_changes(prefect_server: str):
    Variable.set(BLOCK_TYPES_VARIABLE, "a digest of older block types", overwrite=True)
    assert register_block_types() is True
    assert Variable.get(BLOCK_TYPES_VARIABLE) == block_types_digest()
    assert register_block_types() is False  # unchanged: no call but the variable's read


def test_every_block_type_held_as_a_field_is_registered_before_the_others():
    from prefect.blocks.core import Block

    from blocks import ALL_BLOCKS, NESTED_BLOCKS

    held = {
        field.annotation
        for kind in ALL_BLOCKS
        for field in kind.model_fields.values()
        if isinstance(field.annotation, type) and issubclass(field.annotation, Block)
    }
    held |= {
        inner
        for kind in ALL_BLOCKS
        for field in kind.model_fields.values()
        for inner in getattr(field.annotation, "__args__", ())
        if isinstance(inner, type) and issubclass(inner, Block)
    }
    assert held, "no block type holds another: the check below would prove nothing"
    assert held <= set(NESTED_BLOCKS), held - set(NESTED_BLOCKS)
