"""The bridge against slow and hostile clients, and with Prefect down: real uvicorn on loopback.

Prefect is not running here at all: the bridge must still take pushes,
keep them, and say so in its health and metrics.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from deployments.bridge import BridgeConfig, build_app
from tests.deployments.conftest import free_port
from tests.deployments.webhook_helpers import push_body, signed

SECRET = "s3cret"
LIMIT = 6


@dataclass(frozen=True)
class Served:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("hostile")
    config = BridgeConfig(
        api_url=f"http://127.0.0.1:{free_port()}/api",  # no Prefect there
        api_auth=None,
        secret=SecretStr(SECRET),
        queue_url=f"sqlite+aiosqlite:///{root / 'deliveries.db'}",
        is_service=lambda name: name == "payments",
        body_timeout=1.0,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(config),
            host="127.0.0.1",
            port=port,
            log_level="error",
            limit_concurrency=LIMIT,
            timeout_keep_alive=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield Served(port)
    server.should_exit = True
    thread.join(timeout=20)


def _open(served: Served, head: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    connection.sendall(head.encode())
    return connection


def _status(connection: socket.socket, *, within: float) -> int:
    connection.settimeout(within)
    data = connection.recv(4096)
    return int(data.split(b" ", 2)[1])


def _head(length: int, *, signature: bool) -> str:
    lines = ["POST /hooks/github HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += ["X-GitHub-Event: push"]
    if signature:
        lines.append("X-Hub-Signature-256: sha256=" + "0" * 64)
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_request_without_a_signature_is_refused_before_its_body_is_read(bridge: Served):
    began = time.monotonic()
    with _open(bridge, _head(10_000_000, signature=False)) as connection:  # no byte of body sent
        assert _status(connection, within=5) == 401
    assert time.monotonic() - began < 2


def test_a_body_that_does_not_arrive_in_time_is_refused(bridge: Served):
    with _open(bridge, _head(1000, signature=True) + "{") as connection:
        began = time.monotonic()
        assert _status(connection, within=10) == 408
        assert 0.8 < time.monotonic() - began < 5


def test_connections_over_the_limit_are_refused_and_the_bridge_recovers(bridge: Served):
    # uvicorn counts the new connection itself: LIMIT - 1 others fill it.
    slow = [_open(bridge, _head(1000, signature=True) + "{") for _ in range(LIMIT - 1)]
    try:
        time.sleep(0.2)  # let the server see them all before the next one comes
        with _open(bridge, _head(2, signature=True) + "{}") as extra:
            assert _status(extra, within=5) == 503
        for connection in slow:  # each slow client is cut at the body timeout
            assert _status(connection, within=10) == 408
    finally:
        for connection in slow:
            connection.close()
    body = push_body("payments", "d" * 40)
    response = httpx.post(f"{bridge.url}/hooks/github", content=body, headers=signed(SECRET, body))
    assert response.status_code == 202, response.text


def test_with_prefect_down_a_push_is_kept_and_the_health_says_it_waits(bridge: Served):
    body = push_body("payments", "f" * 40)
    headers = signed(SECRET, body)
    accepted = httpx.post(f"{bridge.url}/hooks/github", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    again = httpx.post(f"{bridge.url}/hooks/github", content=body, headers=headers)
    assert again.json()["status"] == "duplicate"
    time.sleep(1.1)  # the health's numbers are at most a second old
    queue = httpx.get(f"{bridge.url}/healthz").json()["queue"]
    assert queue["waiting"] >= 1 and queue["oldest_seconds"] > 0
    metrics = httpx.get(f"{bridge.url}/metrics").text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples["slipway_bridge_accepted_total"] >= 1
    assert samples["slipway_bridge_duplicates_total"] >= 1
    assert samples["slipway_intake_waiting_deliveries"] >= 1
    assert samples["slipway_intake_forward_errors_total"] >= 1  # Prefect does not answer
