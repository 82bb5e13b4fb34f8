"""A new home's default documents are written once, with what `up` learnt before writing them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect import get_client

from blocks import ALL_BLOCKS, DEFAULT_DOCUMENT, NESTED_BLOCKS, PlatformSettings, set_up_blocks
from blocks.base import default_documents
from slipway.home import Ports, SlipwayHome

TOP_LEVEL = [kind for kind in ALL_BLOCKS if kind not in NESTED_BLOCKS]


@pytest.fixture
def no_defaults(prefect_server: str) -> Iterator[None]:
    """No default documents for the test; those of the session are put back afterwards."""
    before = default_documents(TOP_LEVEL, include_secrets=True)
    with get_client(sync_client=True) as client:
        for document in before.values():
            client.delete_block_document(document.id)
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            for document in default_documents(TOP_LEVEL).values():
                client.delete_block_document(document.id)
        for kind in TOP_LEVEL:
            if (document := before.get(kind.get_block_type_slug())) is not None:
                kind._load_from_block_document(document).save(DEFAULT_DOCUMENT, overwrite=True)


def test_the_platform_settings_are_written_once_with_the_base_image_asked_for(
    no_defaults: None, home: SlipwayHome, ports: Ports
) -> None:
    asked: list[str] = []

    def base_image() -> str:
        asked.append("example/base:2")
        return asked[-1]

    _, written = set_up_blocks(home, ports, base_image=base_image)

    assert asked == ["example/base:2"]
    assert {type(d) for d in written} == set(TOP_LEVEL)
    document = default_documents([PlatformSettings])[PlatformSettings.get_block_type_slug()]
    assert PlatformSettings.load_default().base_image == "example/base:2"
    # Never saved a second time: created and updated are one write's (microseconds apart).
    assert (document.updated - document.created).total_seconds() < 0.005
    # A home whose settings exist is not asked again.
    assert set_up_blocks(home, ports, base_image=base_image)[1] == []
    assert asked == ["example/base:2"]
