"""The shared HTTP client: Prometheus queries reuse one connection, not a client each."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from slipway.http import shared_client
from tasks.monitoring.prometheus import Prometheus


class _Answers(BaseHTTPRequestHandler):
    """Answers every query with one sample, keeping the connection open (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[tuple[str, int]]] = set()

    def do_GET(self) -> None:
        _Answers.connections.add(self.client_address)
        body = json.dumps(
            {"status": "success", "data": {"result": [{"metric": {}, "value": [0, "1"]}]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def prometheus_url() -> Iterator[str]:
    _Answers.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_queries_share_one_client_and_its_connection(prometheus_url: str) -> None:
    prometheus = Prometheus(prometheus_url)
    assert [prometheus.value("up") for _ in range(5)] == [1.0] * 5
    assert len(_Answers.connections) == 1  # a client per query opened five
    assert shared_client() is shared_client()
    assert shared_client(trust_env=False) is not shared_client()
