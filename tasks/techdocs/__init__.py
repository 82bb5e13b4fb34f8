"""TechDocs: build a service's MkDocs site and publish it in Backstage's layout.

Four modules, one step each:

- :mod:`tasks.techdocs.config` reads ``mkdocs.yml`` and refuses, before
  anything runs, what would leave the repository or run its code, and any
  extension or plugin off the allow-list of :mod:`tasks.techdocs.extensions`;
- :mod:`tasks.techdocs.build` runs ``mkdocs build --strict`` in a sandbox
  without network that sees only the site's files, and names the commit a
  site comes from;
- :mod:`tasks.techdocs.publish` uploads the site incrementally under
  ``techdocs/default/component/<service>/``, with ``techdocs_metadata.json``;
- :mod:`tasks.techdocs.versions` keeps the last versions as manifests over
  files each stored once, and reads every site back for the docs portal.

Example:
    ```python
    with checkout(server, "payments-api") as co, TemporaryDirectory() as out:
        source = describe_source(co)
        site = build_site(co.path, read_site_config(co.path), Path(out) / "site")
        publish_site(store, "payments-api", site, source, keep_versions=5)
    ```
"""

from tasks.techdocs.build import (
    RESERVED,
    BuiltSite,
    DocsSource,
    RenderCache,
    build_site,
    describe_source,
    is_ancestor,
)
from tasks.techdocs.config import CONFIG_NAMES, SiteConfig, read_site_config
from tasks.techdocs.publish import (
    DOCS_PREFIX,
    METADATA_FILE,
    SITES_PREFIX,
    DocsMetadata,
    PublishedDocs,
    PublishInfo,
    SyncResult,
    VersionEntry,
    already_published,
    prune_versions,
    publish_site,
    read_metadata,
    read_versions,
    site_prefix,
    sync_site,
    update_metadata,
    write_version_entry,
)
from tasks.techdocs.versions import DocsReader

__all__ = [
    "CONFIG_NAMES",
    "DOCS_PREFIX",
    "METADATA_FILE",
    "RESERVED",
    "SITES_PREFIX",
    "BuiltSite",
    "DocsMetadata",
    "DocsReader",
    "DocsSource",
    "PublishInfo",
    "PublishedDocs",
    "RenderCache",
    "SiteConfig",
    "SyncResult",
    "VersionEntry",
    "already_published",
    "build_site",
    "describe_source",
    "is_ancestor",
    "prune_versions",
    "publish_site",
    "read_metadata",
    "read_site_config",
    "read_versions",
    "site_prefix",
    "sync_site",
    "update_metadata",
    "write_version_entry",
]
