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
from tasks.techdocs.metadata import DOCS_PREFIX, SITES_PREFIX, site_prefix

__all__ = [
    "OBJECTS_PREFIX",
    "SITES_PREFIX",
    "objects_prefix",
    "site_prefix",
    "version_prefix",
    "versions_prefix",
]

OBJECTS_PREFIX = f"{DOCS_PREFIX}.objects/"
"""Where the files of every service's versions are kept, by content."""


def versions_prefix(service: str) -> str:
    """Where the versions of ``service``'s site and their index are kept."""
    return f"{site_prefix(service)}{RESERVED}/"


def version_prefix(service: str, label: str) -> str:
    """The key prefix of one version of a service's site."""
    return f"{versions_prefix(service)}{label}/"


def objects_prefix(service: str) -> str:
    """The key prefix of ``service``'s shared version files."""
    return f"{OBJECTS_PREFIX}{service}/"
