"""The service catalog, in Backstage's format, kept in a git repository.

- `repository`: the catalog's git repository, its `Catalog` of Components
  and the tasks that read and change one entry (`find_service`, `update_entry`);
- `entry`: a service's `CatalogEntry` and each environment's typed record;
- `entities`: the other kinds (Group, System, API) and what is derived from them;
- `model`: the whole catalog read at once and checked as a graph (`CatalogModel`);
- `refs`: Backstage entity references, parsed once (`EntityRef`).
"""

from __future__ import annotations

from tasks.catalog.repository import (
    ANNOTATION_PREFIX,
    API_VERSION,
    CATALOG_REPOSITORY,
    Catalog,
    CatalogChange,
    CatalogEntry,
    EnvironmentOutputs,
    EnvironmentRecord,
    catalog_rows,
    find_service,
    list_services,
    record_strings,
    update_entry,
)

__all__ = [
    "ANNOTATION_PREFIX",
    "API_VERSION",
    "CATALOG_REPOSITORY",
    "Catalog",
    "CatalogChange",
    "CatalogEntry",
    "EnvironmentOutputs",
    "EnvironmentRecord",
    "catalog_rows",
    "find_service",
    "list_services",
    "record_strings",
    "update_entry",
]
