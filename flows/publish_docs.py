"""Publish a service's docs: check out, build strictly, upload what changed, show on the portal.

The site lands in the artifact store in Backstage TechDocs' layout
(``techdocs/default/component/<service>/``), with a copy per version under
``versions/``. A push that touches ``docs/`` or ``mkdocs.yml`` on the default
branch runs it (prefect.yaml's trigger); so can the UI, and onboarding.

Publishing again a commit whose site is already current sends nothing. A
commit older than the one the current site shows only adds its version,
so re-publishing an old tag never rolls the portal back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks import ArtifactStore, GitServer
from slipway.errors import InvalidRequest
from slipway.home import HOST, Ports, SlipwayHome
from slipway.names import check_dns_label
from tasks.catalog import Catalog
from tasks.git import checkout
from tasks.storage import ObjectStore, open_store
from tasks.techdocs import (
    DOCS_PREFIX,
    BuiltSite,
    DocsMetadata,
    DocsSource,
    PublishedDocs,
    RenderCache,
    already_published,
    build_site,
    describe_source,
    is_ancestor,
    publish_site,
    read_metadata,
    read_site_config,
    site_prefix,
    update_metadata,
)

__all__ = ["publish_docs"]

_MAX_VERSIONS = 100


@task(name="build-docs", cache_policy=NO_CACHE)
def _build(root: Path, output: Path, service: str, source: DocsSource) -> BuiltSite:
    """Refuse an unsafe configuration, then ``mkdocs build --strict``; warnings go to the run log.

    Pages that did not change since this host's last build of the service
    are taken from its render cache, so cost follows the change.
    """
    log = get_run_logger()
    config = read_site_config(root)
    log.info("building %r (theme %s) from %s", config.site_name, config.theme, config.path.name)
    cache = RenderCache(SlipwayHome.from_env().cache / "docs" / service)
    return build_site(root, config, output, committed_at=source.committed_at, cache=cache, log=log)


@task(name="upload-docs", cache_policy=NO_CACHE)
def _upload(
    store: ObjectStore,
    service: str,
    site: BuiltSite,
    source: DocsSource,
    keep_versions: int,
    update_live: bool,
) -> PublishedDocs:
    """Send the changed files of the site and its version copy; prune old versions."""
    return publish_site(
        store, service, site, source, keep_versions=keep_versions, update_live=update_live
    )


@flow(name="publish-docs", log_prints=False)
def publish_docs(
    service: str, commit: str | None = None, keep_versions: int = 5, force: bool = False
) -> PublishedDocs:
    """Build ``service``'s MkDocs site at ``commit`` and publish it to the docs portal.

    Args:
        service: The catalog name of the service.
        commit: A sha, branch or tag; empty for the tip of the default branch.
        keep_versions: How many versions to keep under ``versions/``.
        force: Build and compare every file even when this commit is already published.
    """
    logger = get_run_logger()
    check_dns_label(service, what="service name")
    if not 1 <= keep_versions <= _MAX_VERSIONS:
        raise InvalidRequest(
            f"keep_versions={keep_versions} is outside 1-{_MAX_VERSIONS}",
            hint="keep at least the version being published",
        )
    Catalog.load_default().get(service)  # ServiceNotFound names the known services
    server, store = GitServer.load_default(), open_store(ArtifactStore.load_default())
    with checkout(server, service, commit or None) as co:
        source = describe_source(co)
        logger.info("publishing docs of %s at %s (%s)", service, source.sha[:12], co.ref)
        live = read_metadata(store, service, strict=False)
        # An older commit than the current site's only adds its version: no rollback.
        live_is_newer = (
            live is not None
            and live.commit != source.sha
            and is_ancestor(co, source.sha, live.commit)
        )
        if live_is_newer and live is not None:
            logger.warning("the portal shows newer %s; adding only a version", live.commit[:12])
        if not force and already_published(store, service, live, source):
            result = _unchanged(store, service, live, source, record=not live_is_newer)
        else:
            with tempfile.TemporaryDirectory(prefix=f"slipway-docs-{service}-") as scratch:
                site = _build(co.path, Path(scratch) / "site", service, source)
                result = _upload(store, service, site, source, keep_versions, not live_is_newer)
    _report(result)
    return result


def _unchanged(
    store: ObjectStore,
    service: str,
    live: DocsMetadata | None,
    source: DocsSource,
    *,
    record: bool,
) -> PublishedDocs:
    """Without building anything, record (when ``record``) a newer commit of the published tree."""
    logger = get_run_logger()
    if record and live is not None and live.slipway is not None and live.commit != source.sha:
        info = live.slipway.model_copy(
            update={
                "commit": source.sha,
                "ref": source.ref,
                "commit_timestamp": int(source.committed_at.timestamp() * 1000),
            }
        )
        update_metadata(
            store, service, live.model_copy(update={"etag": source.sha, "slipway": info})
        )
    logger.info("docs of %s at %s are already published; nothing to send", service, source.sha[:12])
    return PublishedDocs(
        service=service,
        commit=source.sha,
        version=source.label,
        path="/" + site_prefix(service).removeprefix(DOCS_PREFIX),
        live=None,
        version_copy=None,
        note="already published from the same tree; nothing was built or sent",
    )


def _report(result: PublishedDocs) -> None:
    """Log what was sent and leave a link to the portal on the run."""
    logger = get_run_logger()
    url = f"http://{HOST}:{Ports.from_env().docs}{result.path}"
    sent = len(result.live.uploaded) if result.live else 0
    removed = len(result.live.deleted) if result.live else 0
    copied = len(result.version_copy.uploaded) if result.version_copy else 0
    logger.info(
        "published %s: %d files sent, %d removed, version %s (%d files sent, the rest shared) at %s",
        result.service,
        sent,
        removed,
        result.version,
        copied,
        url,
    )
    lines = [
        f"# Docs of `{result.service}`",
        "",
        f"[Open on the docs portal]({url}) · commit `{result.commit[:12]}` · version `{result.version}`",
        "",
        f"- current site: {sent} files sent, {removed} removed",
        f"- version `{result.version}`: {copied} files sent, the rest shared with other versions",
    ]
    if result.pruned:
        lines.append(f"- old versions removed: {', '.join(result.pruned)}")
    if result.note:
        lines.append(f"- {result.note}")
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=f"docs-{result.service}",
        description=f"Published docs of {result.service}",
    )
