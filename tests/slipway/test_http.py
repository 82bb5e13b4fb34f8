"""The shared HTTP client: Prometheus and OSV queries reuse one connection, not a client each."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from slipway.http import shared_client
from tasks.monitoring.prometheus import Prometheus
from tasks.osv_relay import OsvRelay


class _Answers(BaseHTTPRequestHandler):
    """Answers every query with one sample, keeping the connection open (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[tuple[str, int]]] = set()

    def do_GET(self) -> None:
        self._answer({"status": "success", "data": {"result": [{"metric": {}, "value": [0, "1"]}]}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer({"vulns": [{"id": "PYSEC-0000-1"}]})

    def _answer(self, answer: object) -> None:
        _Answers.connections.add(self.client_address)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def url() -> Iterator[str]:
    _Answers.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_queries_share_one_client_and_its_connection(url: str) -> None:
    prometheus = Prometheus(url)
    assert [prometheus.value("up") for _ in range(5)] == [1.0] * 5
    assert len(_Answers.connections) == 1  # a client per query opened five
    assert shared_client() is shared_client()
    assert shared_client(trust_env=False) is not shared_client()


def test_osv_queries_share_one_connection(url: str) -> None:
    relay = OsvRelay(f"{url}/v1/query")
    answers = [relay.query(name, "1.0") for name in ("flask", "requests", "jinja2")]
    assert answers == [[{"id": "PYSEC-0000-1"}]] * 3
    assert len(_Answers.connections) == 1  # a client per query opened three
