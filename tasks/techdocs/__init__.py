"""TechDocs: build a service's MkDocs site and publish it in Backstage's layout.

The steps, each its own module:

- :mod:`tasks.techdocs.config` reads ``mkdocs.yml`` and refuses, before
  anything runs, what would leave the repository or run its code, and any
  extension or plugin off the allow-list of :mod:`tasks.techdocs.extensions`;
- :mod:`tasks.techdocs.build` runs ``mkdocs build --strict`` in a sandbox
  without network that sees only the site's files, and names the commit a
  site comes from;
- :mod:`tasks.techdocs.publish` uploads the site incrementally under
  ``techdocs/default/component/<service>/``, with ``techdocs_metadata.json``
  (:mod:`tasks.techdocs.metadata`) and a version per build;
- :mod:`tasks.techdocs.versions` keeps the last versions as manifests over
  files each stored once (:mod:`tasks.techdocs.layout`), and reads every
  site back for the docs portal (`DocsReader`);
- :mod:`tasks.techdocs.live` compares a commit with the live site, and
  records or links what is published.

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
    build_docs,
    build_site,
    describe_source,
    is_ancestor,
)
from tasks.techdocs.config import CONFIG_NAMES, SiteConfig, read_site_config
from tasks.techdocs.live import LiveDocs, compare_with_live, record_unchanged_docs, report_docs
from tasks.techdocs.metadata import (
    DOCS_PREFIX,
    METADATA_FILE,
    SITES_PREFIX,
    DocsMetadata,
    PublishInfo,
    read_metadata,
    site_prefix,
    update_metadata,
)
from tasks.techdocs.publish import (
    PublishedDocs,
    SyncResult,
    VersionEntry,
    already_published,
    prune_versions,
    publish_site,
    read_versions,
    sync_site,
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
    "LiveDocs",
    "PublishInfo",
    "PublishedDocs",
    "RenderCache",
    "SiteConfig",
    "SyncResult",
    "VersionEntry",
    "already_published",
    "build_docs",
    "build_site",
    "compare_with_live",
    "describe_source",
    "is_ancestor",
    "prune_versions",
    "publish_site",
    "read_metadata",
    "read_site_config",
    "read_versions",
    "record_unchanged_docs",
    "report_docs",
    "site_prefix",
    "sync_site",
    "update_metadata",
    "write_version_entry",
]
