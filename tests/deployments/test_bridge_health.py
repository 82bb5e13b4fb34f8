"""`slipway status`'s bridge line: health and queue come from one answer of ``/healthz``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployments.status import bridge_health


class _Bridge(BaseHTTPRequestHandler):
    """Answers ``/healthz`` with the server's ``body``; counts the requests."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        server.requests += 1
        payload = server.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    body = ""
    requests = 0


@pytest.fixture
def bridge() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Bridge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_one_request_gives_health_and_queue(bridge: _Server) -> None:
    bridge.body = json.dumps({"queue": {"waiting": 2, "oldest_seconds": 7.2, "failed": 1}})
    found = bridge_health(_url(bridge))
    assert found.healthy
    assert found.detail == "HTTP 200, 2 push(es) waiting (oldest 7 s), 1 failed"
    assert bridge.requests == 1


def test_a_stalled_queue_is_unhealthy(bridge: _Server) -> None:
    bridge.body = json.dumps({"queue": {"waiting": 3, "oldest_seconds": 400, "stalled": True}})
    found = bridge_health(_url(bridge))
    assert not found.healthy
    assert "not draining" in found.detail


def test_an_unreadable_queue_is_said_not_dropped(bridge: _Server) -> None:
    bridge.body = "not json"
    found = bridge_health(_url(bridge))
    assert found.healthy
    assert "its queue is not readable" in found.detail


def test_a_bridge_that_does_not_answer_is_unhealthy() -> None:
    server = _Server(("127.0.0.1", 0), _Bridge)
    url = _url(server)
    server.server_close()
    found = bridge_health(url)
    assert not found.healthy
    assert "not answering" in found.detail
