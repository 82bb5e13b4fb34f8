"""The docs portal: every catalog service's docs and how fresh they are, served from the store.

Sites live under ``techdocs/`` in the artifact store, in TechDocs' own layout
(``techdocs/default/component/<service>/``), so the same bucket can also be
read by a Backstage instance. Reading through the store interface means the
portal works the same over a local directory and over S3.

The front page is rendered on each request from the catalog, each site's
``techdocs_metadata.json`` and the tip of each repository, so it changes as
soon as a publish finishes or a commit lands. A service is flagged when it has
no published docs, or when its docs were built from a commit older than the
repository's latest by more than ``--stale-after-days``.

Run as ``python -m deployments.docs_site --port 4400``; `slipway up` does.
"""

from __future__ import annotations

import argparse
import html
import logging
import mimetypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

import git

from slipway.errors import InvalidRequest, ObjectNotFound, SlipwayError, StorageError
from slipway.home import HOST
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import repository_url
from tasks.storage import ObjectStore
from tasks.techdocs import (
    CONFIG_NAMES,
    DOCS_PREFIX,
    RESERVED,
    DocsMetadata,
    read_metadata,
    read_versions,
    site_prefix,
)

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = [
    "DEFAULT_STALE_AFTER",
    "DOCS_PREFIX",
    "CommitInfo",
    "GitDirectory",
    "Portal",
    "ServiceDirectory",
    "ServiceRow",
    "freshness",
    "main",
    "make_server",
    "parse_args",
    "portal_rows",
    "render_index",
]

logger = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = timedelta(days=14)
"""How far docs may trail the latest commit before the portal flags them."""

Freshness = Literal["fresh", "behind", "stale", "missing", "unknown"]


@dataclass(frozen=True)
class CommitInfo:
    """The tip of a service's default branch."""

    sha: str
    committed_at: datetime
    has_docs: bool
    """Whether that commit has a ``mkdocs.yml``."""


class ServiceDirectory(Protocol):
    """Where the portal learns which services exist and how new their code is."""

    def entries(self) -> list[CatalogEntry]:
        """Every catalog service."""

    def latest_commit(self, name: str) -> CommitInfo | None:
        """The tip of the service's default branch; None when the repository has none."""


class GitDirectory:
    """The catalog and repositories of a local git server."""

    def __init__(self, server: GitServer) -> None:
        self._server = server
        self._catalog = Catalog(server)

    def entries(self) -> list[CatalogEntry]:  # noqa: D102
        return self._catalog.entries()

    def latest_commit(self, name: str) -> CommitInfo | None:  # noqa: D102
        branch = f"refs/heads/{self._server.default_branch}"
        try:
            repo = git.Repo(repository_url(self._server, name))
        except git.GitError:  # missing or not a repository
            return None
        try:
            commit = repo.commit(branch)
            names = {blob.name for blob in commit.tree.blobs}
            return CommitInfo(
                sha=str(commit.hexsha),
                committed_at=commit.committed_datetime.astimezone(UTC),
                has_docs=any(n in names for n in CONFIG_NAMES),
            )
        except (git.GitError, git.BadName, ValueError):
            return None  # no commit on the default branch yet, or a broken repository
        finally:
            repo.close()


@dataclass(frozen=True)
class ServiceRow:
    """One line of the portal's index."""

    entry: CatalogEntry
    docs: DocsMetadata | None
    """The current site's metadata, or None when nothing is published."""
    versions: tuple[str, ...]
    """Names of the kept version copies, newest first."""
    latest: CommitInfo | None
    freshness: Freshness
    flagged: bool
    note: str
    """Why it is flagged or behind, in a few words."""

    @property
    def path(self) -> str:
        """The site's path on the portal."""
        return "/" + site_prefix(self.entry.name).removeprefix(DOCS_PREFIX)


@dataclass(frozen=True)
class Portal:
    """Everything the index page shows."""

    rows: tuple[ServiceRow, ...]
    stale_after: timedelta
    problems: tuple[str, ...] = ()
    """What could not be read (catalog, a site's metadata), shown as a banner."""


def freshness(
    docs: DocsMetadata | None, latest: CommitInfo | None, *, stale_after: timedelta
) -> tuple[Freshness, bool, str]:
    """Classify a service's docs against its latest commit: (state, flagged, note)."""
    if docs is None:
        if latest is None:
            return "missing", True, "the repository has no commits yet"
        if not latest.has_docs:
            return "missing", True, "no mkdocs.yml in the repository"
        return "missing", True, "never published: run the publish-docs deployment"
    if latest is None:
        return "unknown", True, "the repository or its default branch is missing"
    if docs.commit == latest.sha:
        return "fresh", False, "built from the latest commit"
    built_from = docs.built_at
    if docs.slipway is not None:
        built_from = datetime.fromtimestamp(docs.slipway.commit_timestamp / 1000, UTC)
    lag = latest.committed_at - built_from
    behind = f"{_span(lag)} older than the latest commit {latest.sha[:7]}"
    if lag > stale_after:
        return "stale", True, behind
    return "behind", False, behind


def portal_rows(
    store: ObjectStore, directory: ServiceDirectory, *, stale_after: timedelta
) -> Portal:
    """Read the catalog, every site's metadata and every repository's tip."""
    try:
        entries = directory.entries()
    except SlipwayError as e:
        logger.error("the portal cannot read the catalog: %s", e)
        return Portal(rows=(), stale_after=stale_after, problems=(f"catalog unavailable: {e}",))
    problems: list[str] = []

    def row(entry: CatalogEntry) -> ServiceRow:
        docs: DocsMetadata | None = None
        versions: tuple[str, ...] = ()
        latest: CommitInfo | None = None
        try:
            docs = read_metadata(store, entry.name)
            versions = tuple(v.name for v in read_versions(store, entry.name))
            latest = directory.latest_commit(entry.name)
        except SlipwayError as e:  # one service's problem must not hide the others
            problems.append(f"{entry.name}: {e}")
        state, flagged, note = freshness(docs, latest, stale_after=stale_after)
        return ServiceRow(entry, docs, versions, latest, state, flagged, note)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="portal") as pool:
        rows = tuple(pool.map(row, entries))
    return Portal(rows=rows, stale_after=stale_after, problems=tuple(problems))


def make_server(
    store: ObjectStore,
    port: int,
    *,
    directory: ServiceDirectory,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> ThreadingHTTPServer:
    """An HTTP server on loopback: the index at ``/``, the sites below it, ``/healthz``."""

    def index() -> bytes:
        return render_index(portal_rows(store, directory, stale_after=stale_after))

    handler = _handler(store, index)
    return ThreadingHTTPServer((HOST, port), handler)


def _handler(store: ObjectStore, index: Callable[[], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "slipway-docs"

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            elif path in ("/", "/index.html"):
                try:
                    page = index()
                except SlipwayError as e:
                    logger.error("docs portal index failed: %s", e)
                    self._send(HTTPStatus.BAD_GATEWAY, f"{e}\n".encode(), "text/plain")
                    return
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self._file(path)

        def _file(self, path: str) -> None:
            key = DOCS_PREFIX + path.lstrip("/")
            if key.endswith("/"):
                key += "index.html"
            try:
                body = store.get(key)
            except ObjectNotFound:
                if not path.endswith("/") and store.exists(f"{key}/index.html"):
                    self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                    self.send_header("Location", path + "/")
                    self.end_headers()
                    return
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            except InvalidRequest:
                self._send(HTTPStatus.BAD_REQUEST, b"bad path\n", "text/plain")
                return
            except StorageError as e:
                logger.error("docs store failed for %s: %s", key, e)
                self._send(HTTPStatus.BAD_GATEWAY, b"artifact store unavailable\n", "text/plain")
                return
            kind = mimetypes.guess_type(key)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, body, kind)

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug(format, *args)

    return Handler


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .25rem}p.lead{color:#57606a;margin:0 0 1.25rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.5rem .6rem;vertical-align:top}
th{border-bottom:2px solid #d0d7de;font-size:.8rem;text-transform:uppercase;color:#57606a}
tr{border-bottom:1px solid #eaeef2}tr.flagged{background:#fff8f0}
code{font-size:.85rem}.muted{color:#57606a;font-size:.85rem}.versions a{margin-right:.4rem}
.badge{display:inline-block;border-radius:1rem;padding:.1rem .6rem;font-size:.8rem;font-weight:600}
.fresh{background:#dafbe1;color:#116329}.behind{background:#fff8c5;color:#7d4e00}
.stale,.missing,.unknown{background:#ffebe9;color:#a40e26}
.problem{background:#ffebe9;border:1px solid #ff8182;padding:.6rem .8rem;margin-bottom:1rem}
"""


def render_index(portal: Portal) -> bytes:
    """The portal's front page: one row per catalog service, flagged rows highlighted."""
    flagged = sum(r.flagged for r in portal.rows)
    banner = "".join(f'<div class="problem" role="alert">{_e(p)}</div>' for p in portal.problems)
    rows = "".join(_row(r) for r in portal.rows) or (
        '<tr><td colspan="7" class="muted">The catalog has no services yet.</td></tr>'
    )
    summary = (
        f"{len(portal.rows)} services, {flagged} flagged. Docs built from a commit more than "
        f"{_span(portal.stale_after)} older than the repository's latest are flagged stale."
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Slipway docs</title><style>{_STYLE}</style></head><body>"
        f"<h1>Slipway docs</h1><p class='lead' id='summary'>{_e(summary)}</p>{banner}"
        "<table id='services'><thead><tr><th>Service</th><th>Owner</th><th>Description</th>"
        "<th>Docs</th><th>Last build</th><th>Commit</th><th>Freshness</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )
    return page.encode()


def _row(row: ServiceRow) -> str:
    name, docs = row.entry.name, row.docs
    if docs is None:
        link, built, commit = '<span class="muted">no docs</span>', "", ""
    else:
        versions = "".join(
            f'<a href="{_e(row.path)}{RESERVED}/{_e(v)}/">{_e(v[:12])}</a>' for v in row.versions
        )
        link = (
            f'<a class="docs-link" href="{_e(row.path)}">{_e(docs.site_name)}</a>'
            f'<div class="versions muted">{"versions: " + versions if versions else ""}</div>'
        )
        built = f"{docs.built_at:%Y-%m-%d %H:%M} UTC"
        commit = f'<code title="{_e(docs.commit)}">{_e(docs.commit[:12])}</code>'
    description = row.entry.description.splitlines()[0] if row.entry.description else ""
    return (
        f'<tr data-service="{_e(name)}" data-freshness="{row.freshness}" '
        f'data-flagged="{str(row.flagged).lower()}"{" class=flagged" if row.flagged else ""}>'
        f"<td><strong>{_e(name)}</strong></td><td>{_e(row.entry.owner)}</td>"
        f"<td>{_e(description)}</td><td>{link}</td><td>{built}</td><td>{commit}</td>"
        f'<td><span class="badge {row.freshness}">{row.freshness}</span>'
        f'<div class="muted">{_e(row.note)}</div></td></tr>'
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _span(delta: timedelta) -> str:
    if delta < timedelta(hours=1):
        return "less than an hour"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)} hours"
    return f"{delta.days} days"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The portal's command line, as `slipway up` passes it."""
    parser = argparse.ArgumentParser(prog="python -m deployments.docs_site")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--stale-after-days",
        type=float,
        default=DEFAULT_STALE_AFTER.days,
        help="flag docs built from a commit older than the latest by more than this",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the docs of the ``default`` artifact store until terminated."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from blocks import ArtifactStore, GitServer
    from tasks.storage import open_store

    store = open_store(ArtifactStore.load_default())
    directory = GitDirectory(GitServer.load_default())
    stale_after = timedelta(days=args.stale_after_days)
    server = make_server(store, args.port, directory=directory, stale_after=stale_after)
    logger.info("docs portal on http://%s:%d over %s", HOST, args.port, store.describe())
    server.serve_forever()


if __name__ == "__main__":
    main()
