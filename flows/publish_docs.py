"""Publish a service's docs: check out, build strictly, upload what changed, show on the portal.

The site lands in the artifact store in Backstage TechDocs' layout
(``techdocs/default/component/<service>/``), with the last versions under
``versions/``, each sharing unchanged files with the others. A push that touches ``docs/`` or ``mkdocs.yml`` on the default
branch runs it (prefect.yaml's trigger); so can the UI, and onboarding.

Publishing again a commit whose site is already current sends nothing. A
commit older than the one the current site shows only adds its version,
so re-publishing an old tag never rolls the portal back.
"""

from __future__ import annotations

from prefect import flow

from blocks import ArtifactStore, GitServer
from slipway.errors import InvalidRequest
from slipway.names import ServiceName
from tasks.catalog import find_service
from tasks.git import checkout
from tasks.storage import open_store
from tasks.techdocs import (
    PublishedDocs,
    RenderCache,
    build_docs,
    compare_with_live,
    publish_site,
    record_unchanged_docs,
    report_docs,
)

__all__ = ["publish_docs"]

_MAX_VERSIONS = 100


@flow(name="publish-docs", log_prints=False)
def publish_docs(
    service: ServiceName, commit: str | None = None, keep_versions: int = 5, force: bool = False
) -> PublishedDocs:
    """Build ``service``'s MkDocs site at ``commit`` and publish it to the docs portal.

    Args:
        service: The catalog name of the service.
        commit: A sha, branch or tag; empty for the tip of the default branch.
        keep_versions: How many versions to keep under ``versions/``.
        force: Build and compare every file even when this commit is already published.
    """
    if not 1 <= keep_versions <= _MAX_VERSIONS:
        raise InvalidRequest(
            f"keep_versions={keep_versions} is outside 1-{_MAX_VERSIONS}",
            hint="keep at least the version being published",
        )
    server = GitServer.load_default()
    find_service(service, server)
    store = open_store(ArtifactStore.load_default())
    with (
        RenderCache.of(service).held() as cache,  # one build of the service at a time
        checkout(server, service, commit or None, kept=cache.checkout) as co,
    ):
        seen = compare_with_live(store, service, co, force=force)
        if seen.unchanged:
            return report_docs(record_unchanged_docs(store, seen))
        site = build_docs(co.path, cache, seen.source)
        published = publish_site(
            store,
            service,
            site,
            seen.source,
            keep_versions=keep_versions,
            update_live=not seen.newer,
            digests=cache.digests,
        )
    return report_docs(published)
