"""A block type's JSON schema is built once per process, not at every field of every save.

Stands in for what PrefectHQ/prefect#17907 found for states (pydantic's
``model_json_schema()`` is slow, where Prefect calls it only to read field
names), still so for blocks in Prefect 3.9.1: ``Block._to_block_document``
asks ``_field_has_secrets`` about each field, and each of those builds the
whole schema again, as do ``repr``, the schema checksum and the block schema
that ``save`` registers first. Writing a new home's ten default documents
built it 378 times: 2 s of the 2.9 s `slipway up` spent on them.

A block class's schema does not change once the class exists, so `apply`
memoizes ``Block.model_json_schema`` per class and arguments, and hands each
caller its own deep copy (Prefect's callers change what they get: the
checksum pops ``definitions``).
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply"]

PATCH = Patch(
    name="block-schemas",
    module="prefect.blocks.core",
    qualname="Block.model_json_schema",
    upstream="https://github.com/PrefectHQ/prefect/issues/17907",
    fingerprint="b4a3289e821c61d7",
)


def apply() -> bool:
    """Memoize block schemas in this process (and its forks); safe to call twice.

    Returns whether the memo is in place (not when Prefect's code changed since this was written).
    """
    from prefect.blocks.core import Block

    original = Block.__dict__["model_json_schema"].__func__
    if getattr(original, "_slipway_memoized", False):
        return True
    if not PATCH.applicable():
        return False
    built: weakref.WeakKeyDictionary[type, dict[tuple[Any, ...], dict[str, Any]]]
    built = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def model_json_schema(cls: type[Block], *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (args, tuple(sorted(kwargs.items())))
        with lock:
            schema = built.get(cls, {}).get(key)
        if schema is None:
            schema = original(cls, *args, **kwargs)
            with lock:
                built.setdefault(cls, {})[key] = schema
        return copy.deepcopy(schema)

    model_json_schema._slipway_memoized = True  # type: ignore[attr-defined]
    model_json_schema.__doc__ = original.__doc__
    Block.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign,assignment]
    return True
