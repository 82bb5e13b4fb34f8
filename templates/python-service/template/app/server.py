"""A small HTTP service on the standard library only.

The service's name and description come from ``service.json`` next to this
file, never from code, so nothing a user typed at onboarding is ever Python.
Every request is counted and timed for Prometheus (``GET /metrics``, see
``app/metrics.py``).

Environment:
    HOST: Address to bind, default ``127.0.0.1`` (the platform's loopback rule).
    PORT: Port to bind, default the port chosen at onboarding.
    GIT_SHA: The commit being served, reported by ``/healthz``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app.metrics import CONTENT_TYPE, Metrics

__all__ = ["Handler", "load_service", "main", "make_server"]

SERVICE_FILE = Path(__file__).with_name("service.json")
ROUTES = frozenset({"/", "/healthz", "/metrics"})
"""The routes this service answers; any other path counts as ``other``."""

log = logging.getLogger("app.server")


def load_service(path: Path = SERVICE_FILE) -> dict[str, Any]:
    """The answers the service was onboarded with."""
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


class Handler(BaseHTTPRequestHandler):
    """Answers ``GET /healthz`` and ``GET /`` with JSON, ``GET /metrics`` for Prometheus."""

    service: dict[str, Any] = {}
    metrics: Metrics  # set by make_server: one registry per server
    server_version = "service/1"
    status = 0
    _started = 0.0
    _route = ""
    _observed = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches on
        self._started = time.perf_counter()
        self._route = self.path.split("?", 1)[0]
        self._observed = False
        try:
            self._get(self._route)
        finally:
            self._observe()

    def _observe(self) -> None:
        # Counted before the body is written, so whoever has the answer can
        # already see it in /metrics (a test, or a scrape right after).
        if not self._observed:
            self._observed = True
            elapsed = time.perf_counter() - self._started
            self.metrics.observe("GET", self._route, self.status, elapsed)

    def _get(self, route: str) -> None:
        if route == "/healthz":
            self._send(200, {
                "status": "ok",
                "service": self.service["service"],
                "version": os.environ.get("GIT_SHA", "dev"),
            })
        elif route == "/":
            self._send(200, {
                "service": self.service["service"],
                "description": self.service["description"],
            })
        elif route == "/metrics":
            status, raw = self.metrics.render()
            self._send_raw(status, raw, CONTENT_TYPE)
        else:
            self._send(404, {"error": "not found", "path": route})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send_raw(status, raw, "application/json; charset=utf-8")

    def _send_raw(self, status: int, raw: bytes, content_type: str) -> None:
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self._observe()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.info("%s %s", self.address_string(), format % args)


def make_server(host: str, port: int, service: dict[str, Any] | None = None) -> ThreadingHTTPServer:
    """A server bound to ``host:port``; port 0 picks a free one (tests use that)."""
    bound = {"service": service or load_service(), "metrics": Metrics(ROUTES)}
    handler = type("BoundHandler", (Handler,), bound)
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    """Serve until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    service = load_service()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", service["port"]))
    server = make_server(host, port, service)

    # As PID 1 in a container, SIGTERM has no default action: stop on it explicitly.
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info("%s listening on http://%s:%d", service["service"], host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
