"""The artifact store: scan reports, SBOMs and published docs behind one interface.

Flows write through :class:`ObjectStore` and the docs portal reads through it, so
neither knows whether artifacts live in a directory or an S3 bucket. Both take the
same keys (:func:`check_key`) and report the same ETags, so an artifact copied from
one to the other keeps both. Get one with ``open_store(ArtifactStore.load("default"))``.

One module per kind: ``base`` (the interface and key rules), ``local`` (a
directory) and ``s3`` (a bucket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError
from tasks.storage.base import ObjectStore, StoredObject, check_key
from tasks.storage.local import LocalStore
from tasks.storage.s3 import S3Store

if TYPE_CHECKING:
    from blocks.artifact_store import ArtifactStore

__all__ = ["LocalStore", "ObjectStore", "S3Store", "StoredObject", "check_key", "open_store"]


def open_store(block: ArtifactStore) -> ObjectStore:
    """The store that an ArtifactStore block describes; makes no request yet."""
    if block.kind == "local" and block.local_path is not None:
        return LocalStore(block.local_path / block.prefix if block.prefix else block.local_path)
    if block.kind == "s3" and block.bucket is not None:
        from blocks.s3 import S3Connection  # blocks import Prefect; keep this module light

        connection = block.s3 if block.s3 is not None else S3Connection()
        return S3Store(bucket=block.bucket, prefix=block.prefix, connection=connection)
    hint = "edit the slipway-artifact-store block; its validation should have said so"
    raise ConfigurationError(f"the {block.kind} artifact store has no location", hint=hint)
