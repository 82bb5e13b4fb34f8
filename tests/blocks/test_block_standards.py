"""Every Slipway block meets one standard, as every prefect-aws block does.

Reuses Prefect's own ``BlockStandardTestSuite`` where its rules fit a platform that
runs offline, and adds Slipway's: a ``slipway-`` slug, titled fields and secrets kept
as ``SecretStr``. Pure unit tests: no Prefect server is needed.
"""

from __future__ import annotations

import re
import types
import typing

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite
from pydantic import SecretStr

from blocks import ALL_BLOCKS, SlipwayBlock

SECRET_NAME = re.compile(r"(password|token|secret)")


def secret_field_names(block: type[Block]) -> set[str]:
    return {name for name in block.model_fields if SECRET_NAME.search(name)}


def annotation_parts(annotation: object) -> tuple[object, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.__name__)
class TestBlockStandards(BlockStandardTestSuite):
    """Prefect's standard suite (description, field descriptions) plus Slipway's rules."""

    # Prefect's rules that do not fit: Slipway's blocks point at no online docs or
    # logo (the platform runs offline), and their examples load the "default"
    # document rather than "BLOCK_NAME". test_has_an_example_that_imports_from_blocks
    # below replaces the last one.
    test_has_a_documentation_url = None  # type: ignore[assignment]
    test_has_a_valid_image = None  # type: ignore[assignment]
    test_has_a_valid_code_example = None  # type: ignore[assignment]

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        """Fills the suite's abstract fixture; the class's parametrize gives each block."""
        return block

    def test_is_a_slipway_block_with_a_slipway_slug(self, block: type[Block]) -> None:
        assert issubclass(block, SlipwayBlock)
        assert block._block_type_name and block._block_type_name.startswith("Slipway ")
        assert block._block_type_slug and block._block_type_slug.startswith("slipway-")
        assert block.get_block_type_slug() == block._block_type_slug

    def test_has_an_example_that_imports_from_blocks(self, block: type[Block]) -> None:
        example = block.get_code_example()
        assert example is not None, f"{block.__name__}'s docstring has no Example section"
        assert f"from blocks import {block.__name__}" in example
        assert f'{block.__name__}.load("default")' in example or f"{block.__name__}(" in example

    def test_every_field_has_a_title_and_a_description(self, block: type[Block]) -> None:
        for name, field in block.model_fields.items():
            assert field.title, f"{block.__name__}.{name} has no title"
            assert field.description, f"{block.__name__}.{name} has no description"

    def test_secret_looking_fields_are_secret_str(self, block: type[Block]) -> None:
        for name in secret_field_names(block):
            parts = annotation_parts(block.model_fields[name].annotation)
            assert SecretStr in parts, f"{block.__name__}.{name} must be a SecretStr"

    def test_secret_fields_are_declared_secret_in_the_schema(self, block: type[Block]) -> None:
        schema = block.model_json_schema()
        declared = {name for name in schema.get("secret_fields", []) if "." not in name}
        assert declared == secret_field_names(block)

    def test_block_schema_can_be_generated(self, block: type[Block]) -> None:
        schema = block._to_block_schema()
        assert schema.block_type is not None
        assert schema.block_type.slug == block.get_block_type_slug()
        assert schema.checksum.startswith("sha256:")
        assert set(schema.fields["properties"]) == set(block.model_fields)


def test_every_block_module_is_in_all_blocks() -> None:
    import blocks

    exported = {getattr(blocks, name) for name in blocks.__all__}
    block_types = {b for b in exported if isinstance(b, type) and issubclass(b, SlipwayBlock)}
    assert block_types - {SlipwayBlock} == set(ALL_BLOCKS)


def test_nested_blocks_come_before_the_blocks_that_use_them() -> None:
    order = {block: i for i, block in enumerate(ALL_BLOCKS)}
    for block in ALL_BLOCKS:
        for field in block.model_fields.values():
            for part in annotation_parts(field.annotation):
                if isinstance(part, type) and issubclass(part, SlipwayBlock):
                    assert order[part] < order[block], f"{part.__name__} after {block.__name__}"
