"""The docs portal: published MkDocs sites, served from the artifact store.

Sites live under ``techdocs/`` in the store, in TechDocs' own layout
(``techdocs/default/component/<service>/``), so the same bucket can also be
read by a Backstage instance. Reading through the store interface means the
portal works the same over a local directory and over S3.

Run as ``python -m deployments.docs_site --port 4400``; `slipway up` does.
"""

from __future__ import annotations

import argparse
import html
import logging
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from slipway.errors import InvalidRequest, ObjectNotFound, StorageError
from slipway.home import HOST
from tasks.storage import ObjectStore

__all__ = ["DOCS_PREFIX", "make_server", "main"]

logger = logging.getLogger(__name__)

DOCS_PREFIX = "techdocs/"
"""Where published sites start inside the artifact store."""
_SITES = f"{DOCS_PREFIX}default/component/"


def make_server(store: ObjectStore, port: int) -> ThreadingHTTPServer:
    """An HTTP server on loopback that answers from ``store``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "slipway-docs"

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            elif path == "/":
                self._send(HTTPStatus.OK, _index(store), "text/html; charset=utf-8")
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

    return ThreadingHTTPServer((HOST, port), Handler)


def _index(store: ObjectStore) -> bytes:
    """A portal page of its own when the publish flow has not written one yet."""
    try:
        return store.get(f"{DOCS_PREFIX}index.html")
    except ObjectNotFound:
        pass
    services = sorted(
        {
            o.key[len(_SITES) :].split("/", 1)[0]
            for o in store.list(_SITES)
            if "/" in o.key[len(_SITES) :]
        }
    )
    items = "".join(
        f'<li><a href="/default/component/{html.escape(s)}/">{html.escape(s)}</a></li>'
        for s in services
    )
    body = f"<ul>{items}</ul>" if services else "<p>No service has published docs yet.</p>"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Slipway docs</title></head>"
        f"<body><h1>Slipway docs</h1>{body}</body></html>"
    )
    return page.encode()


def main(argv: list[str] | None = None) -> None:
    """Serve the docs of the ``default`` artifact store until terminated."""
    parser = argparse.ArgumentParser(prog="python -m deployments.docs_site")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from blocks import ArtifactStore
    from tasks.storage import open_store

    store = open_store(ArtifactStore.load_default())
    server = make_server(store, args.port)
    logger.info("docs portal on http://%s:%d over %s", HOST, args.port, store.describe())
    server.serve_forever()


if __name__ == "__main__":
    main()
