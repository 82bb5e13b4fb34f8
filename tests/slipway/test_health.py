"""Health probes: one HTTP client per process, a fork makes its own, answers read as health."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator

import pytest

from slipway.health import http_health
from slipway.http import shared_client


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_probes_share_one_client_and_read_each_answer(server: str) -> None:
    assert shared_client() is shared_client()
    assert http_health("x", server, f"{server}/ok").healthy
    sick = http_health("x", server, f"{server}/sick")
    assert not sick.healthy and "HTTP 503" in sick.detail
    httpd_gone = http_health("x", "-", "http://127.0.0.1:1/ok")
    assert not httpd_gone.healthy and "not answering" in httpd_gone.detail


def test_a_forked_child_makes_its_own_shared_client() -> None:
    parent = shared_client()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"own" if shared_client() is not parent else b"shared")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"own"
