"""Where published sites live in the artifact store: TechDocs' layout, and Slipway's additions.

Under the store's ``techdocs/`` prefix (a Backstage instance with
``techdocs.builder: external`` and the bucket's root path set to
``techdocs`` reads it as it is)::

    default/component/<service>/                        the current site
    default/component/<service>/techdocs_metadata.json
    default/component/<service>/versions/<label>/       a version: its manifest and metadata
    default/component/<service>/versions/index.json     the kept versions
    .objects/<service>/<sha256>                         the versions' files, each stored once
"""

from __future__ import annotations

from tasks.techdocs.build import RESERVED

__all__ = [
    "DOCS_PREFIX",
    "METADATA_FILE",
    "OBJECTS_PREFIX",
    "SITES_PREFIX",
    "objects_prefix",
    "site_prefix",
    "version_prefix",
]

DOCS_PREFIX = "techdocs/"
"""Where published sites start inside the artifact store."""
SITES_PREFIX = f"{DOCS_PREFIX}default/component/"
"""TechDocs' ``<namespace>/<kind>/`` for every Slipway service."""
METADATA_FILE = "techdocs_metadata.json"
"""TechDocs' description of a site; Backstage reads it before any page."""
OBJECTS_PREFIX = f"{DOCS_PREFIX}.objects/"
"""Where the files of every service's versions are kept, by content."""


def site_prefix(service: str) -> str:
    """The key prefix of a service's current site."""
    return f"{SITES_PREFIX}{service}/"


def version_prefix(service: str, label: str) -> str:
    """The key prefix of one version of a service's site."""
    return f"{site_prefix(service)}{RESERVED}/{label}/"


def objects_prefix(service: str) -> str:
    """The key prefix of ``service``'s shared version files."""
    return f"{OBJECTS_PREFIX}{service}/"
