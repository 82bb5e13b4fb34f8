"""`blocks.Defaults` reads several default documents in one request, as `load_default` would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from blocks import DEFAULT_DOCUMENT, ArtifactStore, Defaults, PlatformSettings, S3Connection
from blocks.base import SlipwayBlock
from slipway.errors import ConfigurationError

KINDS: tuple[type[SlipwayBlock], ...] = (ArtifactStore, S3Connection, PlatformSettings)


@pytest.fixture
def saved(prefect_server: str) -> Iterator[None]:
    """Default documents of `KINDS` for this test; whatever was there before comes back."""
    before: dict[type[SlipwayBlock], SlipwayBlock | None] = {}
    for kind in KINDS:
        try:
            before[kind] = kind.load(DEFAULT_DOCUMENT)
        except ValueError:
            before[kind] = None
    connection = S3Connection(
        endpoint_url="http://127.0.0.1:9",
        access_key_id="AKIDEXAMPLE",
        secret_access_key=SecretStr("s3cr3t"),
    )
    connection.save(DEFAULT_DOCUMENT, overwrite=True)
    ArtifactStore(kind="s3", bucket="reports", prefix="t/", s3=connection).save(
        DEFAULT_DOCUMENT, overwrite=True
    )
    PlatformSettings(base_image="example/base:1").save(DEFAULT_DOCUMENT, overwrite=True)
    try:
        yield
    finally:
        for kind, block in before.items():
            if block is not None:
                block.save(DEFAULT_DOCUMENT, overwrite=True)
            else:
                _delete(kind)


def _delete(kind: type[SlipwayBlock]) -> None:
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                DEFAULT_DOCUMENT, kind.get_block_type_slug()
            )
        except ObjectNotFound:
            return
        client.delete_block_document(document.id)


def test_reads_every_document_as_load_does_with_nested_blocks_and_secrets(saved: None) -> None:
    loaded = Defaults(*KINDS)

    for kind in KINDS:
        assert loaded[kind] == kind.load(DEFAULT_DOCUMENT)
    store = loaded[ArtifactStore]
    assert store.s3 is not None and store.s3.secret_access_key is not None
    assert store.s3.secret_access_key.get_secret_value() == "s3cr3t"
    assert loaded[PlatformSettings].base_image == "example/base:1"
    with pytest.raises(KeyError):
        loaded[ArtifactStore.__mro__[0].__base__]  # type: ignore[index]


def test_a_missing_document_is_named_with_how_to_create_it(saved: None) -> None:
    _delete(S3Connection)

    with pytest.raises(ConfigurationError, match="slipway-s3-connection/default") as error:
        Defaults(ArtifactStore, S3Connection)
    assert "slipway up" in (error.value.hint or "")
