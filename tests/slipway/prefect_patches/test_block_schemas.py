"""A block type's JSON schema is built once, and every caller still gets one it may change."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr

from slipway.prefect_patches import block_schemas

_ID = uuid4()


class _Login(Block):
    user: str = "ci"
    password: SecretStr = SecretStr("s3cret")
    note: str = ""


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """Every block class whose schema pydantic generates; Prefect's method restored after."""
    from pydantic import BaseModel

    calls: list[type] = []
    real = BaseModel.model_json_schema.__func__  # type: ignore[attr-defined]

    def counting(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if issubclass(cls, Block):
            calls.append(cls)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(BaseModel, "model_json_schema", classmethod(counting))
    monkeypatch.setattr(Block, "model_json_schema", Block.__dict__["model_json_schema"])
    return calls


def test_without_the_patch_one_document_builds_the_schema_at_every_field(generated):
    _Login()._to_block_document(name="default", block_schema_id=_ID, block_type_id=_ID)

    assert len(generated) > len(_Login.model_fields)


def test_with_the_patch_it_is_built_once_and_each_caller_gets_its_own_copy(generated):
    before = _Login.model_json_schema()
    generated.clear()
    assert block_schemas.apply()
    assert block_schemas.apply()  # a second call wraps nothing twice

    document = _Login()._to_block_document(name="default", block_schema_id=_ID, block_type_id=_ID)
    first = _Login.model_json_schema()
    first.pop("properties")  # what one caller does to its copy...
    second = _Login.model_json_schema()

    assert generated == [_Login, _Login]  # once per arguments: with and without aliases
    _Login()._to_block_document(name="other", block_schema_id=_ID, block_type_id=_ID)
    assert len(generated) == 2
    assert second == before  # ...the next one does not see
    assert second["secret_fields"] == ["password"]
    assert document.data["password"] == SecretStr("s3cret")
