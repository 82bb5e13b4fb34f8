"""``techdocs_metadata.json``: what TechDocs knows of a published site, and what Slipway adds.

Backstage reads it before any page. Slipway adds where the site came from
(`PublishInfo`: commit, ref, version, the build's key) under ``slipway``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipway.errors import ObjectNotFound, StorageError
from tasks.storage import ObjectStore
from tasks.techdocs.build import RESERVED

__all__ = [
    "DOCS_PREFIX",
    "METADATA_FILE",
    "SITES_PREFIX",
    "DocsMetadata",
    "PublishInfo",
    "metadata_json",
    "read_metadata",
    "site_prefix",
    "update_metadata",
]

logger = logging.getLogger(__name__)

DOCS_PREFIX = "techdocs/"
"""Where published sites start inside the artifact store."""
SITES_PREFIX = f"{DOCS_PREFIX}default/component/"
"""TechDocs' ``<namespace>/<kind>/`` for every Slipway service."""
METADATA_FILE = "techdocs_metadata.json"
"""TechDocs' description of a site; Backstage reads it before any page."""


class PublishInfo(BaseModel):
    """What Slipway adds to TechDocs' metadata: where the site came from."""

    model_config = ConfigDict(frozen=True)

    service: str
    commit: str = Field(description="The full sha the site was built from.")
    ref: str = Field(description="What was asked for: branch, tag or sha.")
    version: str = Field(description="The name of this build's copy under versions/.")
    commit_timestamp: int = Field(description="Committer time of `commit`, ms since the epoch.")
    build_key: str = Field(description="Hash of the commit's tree and the build's packages.")


class DocsMetadata(BaseModel):
    """``techdocs_metadata.json``: TechDocs' keys, plus Slipway's under ``slipway``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    site_name: str
    site_description: str = ""
    build_timestamp: int = Field(description="ms since the epoch, as TechDocs writes it.")
    files: tuple[str, ...] = Field(
        default=(), description="Every file of the site, relative to its root."
    )
    etag: str = Field(
        default="", description="The commit sha, as Backstage's git sources report it."
    )
    slipway: PublishInfo | None = None

    @property
    def built_at(self) -> datetime:
        """``build_timestamp`` as a time."""
        return datetime.fromtimestamp(self.build_timestamp / 1000, UTC)

    @property
    def commit(self) -> str:
        """The commit the site was built from (TechDocs' etag for sites Slipway did not build)."""
        return self.slipway.commit if self.slipway else self.etag


def site_prefix(service: str) -> str:
    """The key prefix of a service's current site."""
    return f"{SITES_PREFIX}{service}/"


def update_metadata(store: ObjectStore, service: str, metadata: DocsMetadata) -> None:
    """Replace only the current site's metadata, e.g. to record a newer commit of the same tree."""
    key = site_prefix(service) + METADATA_FILE
    store.put(key, metadata_json(metadata), content_type="application/json")


def read_metadata(
    store: ObjectStore, service: str, version: str | None = None, *, strict: bool = True
) -> DocsMetadata | None:
    """The metadata of the current site (or of one version), or None when none is published.

    Args:
        store: The artifact store.
        service: The service.
        version: A version's label; None for the current site.
        strict: Raise on metadata that is not TechDocs' JSON; False treats it as absent,
            so that a publish can replace it.

    Raises:
        StorageError: The store failed, or (``strict``) the stored metadata is unreadable.
    """
    base = site_prefix(service) + (f"{RESERVED}/{version}/" if version else "")
    try:
        raw = store.get(base + METADATA_FILE)
    except ObjectNotFound:
        return None
    try:
        return DocsMetadata.model_validate_json(raw)
    except ValidationError as e:
        problem = f"{base}{METADATA_FILE} is not TechDocs metadata: {e.errors()[0]['msg']}"
        if not strict:
            logger.warning("%s; it will be replaced", problem)
            return None
        raise StorageError(
            problem, hint=f"publish the docs again: run the publish-docs deployment for {service}"
        ) from e


def metadata_json(metadata: DocsMetadata) -> bytes:
    """``metadata`` as the JSON file TechDocs reads."""
    return json.dumps(metadata.model_dump(mode="json", exclude_none=True), indent=2).encode()
