"""The live site of a service's docs: is a commit already published, and the run's link to it.

Publishing again a commit whose site is already current sends nothing. A
commit older than the one the live site shows only adds its version, so
re-publishing an old tag never rolls the portal back.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from slipway.home import HOST, Ports
from tasks.git import Checkout
from tasks.storage import ObjectStore
from tasks.techdocs.build import DocsSource, describe_source, is_ancestor
from tasks.techdocs.metadata import (
    DOCS_PREFIX,
    DocsMetadata,
    read_metadata,
    site_prefix,
    update_metadata,
)
from tasks.techdocs.publish import PublishedDocs, already_published

__all__ = ["LiveDocs", "compare_with_live", "record_unchanged_docs", "report_docs"]


@dataclass(frozen=True)
class LiveDocs:
    """A commit to publish, beside the site that is live now."""

    service: str
    source: DocsSource
    """The commit to publish."""
    live: DocsMetadata | None
    """The live site's metadata; None when nothing is published."""
    newer: bool
    """Whether the live site shows a newer commit: then only a version is added."""
    unchanged: bool
    """Whether the live site was built from this tree already: nothing to build or send."""


@task(name="compare-with-live-docs", cache_policy=NO_CACHE)
def compare_with_live(store: ObjectStore, service: str, co: Checkout, *, force: bool) -> LiveDocs:
    """What the live site is to the checked-out commit; ``force`` counts nothing as unchanged."""
    logger = get_run_logger()
    source = describe_source(co)
    logger.info("publishing docs of %s at %s (%s)", service, source.sha[:12], co.ref)
    live = read_metadata(store, service, strict=False)
    # An older commit than the current site's only adds its version: no rollback.
    newer = (
        live is not None and live.commit != source.sha and is_ancestor(co, source.sha, live.commit)
    )
    if newer and live is not None:
        logger.warning("the portal shows newer %s; adding only a version", live.commit[:12])
    unchanged = not force and already_published(store, service, live, source)
    return LiveDocs(service, source, live, newer, unchanged)


@task(name="record-unchanged-docs", cache_policy=NO_CACHE)
def record_unchanged_docs(store: ObjectStore, seen: LiveDocs) -> PublishedDocs:
    """Without building anything, record a newer commit of the published tree as the live one."""
    live, source, service = seen.live, seen.source, seen.service
    if (
        not seen.newer
        and live is not None
        and live.slipway is not None
        and live.commit != source.sha
    ):
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
    get_run_logger().info(
        "docs of %s at %s are already published; nothing to send", service, source.sha[:12]
    )
    return PublishedDocs(
        service=service,
        commit=source.sha,
        version=source.label,
        path="/" + site_prefix(service).removeprefix(DOCS_PREFIX),
        live=None,
        version_copy=None,
        note="already published from the same tree; nothing was built or sent",
    )


@task(name="report-docs", cache_policy=NO_CACHE)
def report_docs(result: PublishedDocs) -> PublishedDocs:
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
    return result
