"""A failed health check says what happened: how the container ended, and its last log lines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from slipway.errors import DeployError
from tasks.release import wait_healthy
from tests.conftest import BASE_IMAGE, free_port
from tests.flows.delivery_fixtures import docker_or_skip

pytestmark = pytest.mark.docker

CRASH = "import sys; print('cannot open /data/app.db', flush=True); sys.exit(3)"


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    client = docker_or_skip()
    yield client
    client.close()  # type: ignore[attr-defined]


@contextmanager
def crashing(client: object, **options: object) -> Iterator[object]:
    container = client.containers.run(  # type: ignore[attr-defined]
        BASE_IMAGE,
        ["python3", "-c", CRASH],
        name=f"slipway-test-crash-{uuid.uuid4().hex[:8]}",
        network_mode="none",
        detach=True,
        **options,
    )
    try:
        yield container
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("restart", [{"Name": "no"}, {"Name": "unless-stopped"}])
def test_a_container_that_exits_is_reported_with_its_code_time_and_log_at_once(
    client: object, restart: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    with (
        crashing(client, restart_policy=restart) as container,
        pytest.raises(DeployError) as error,
    ):
        wait_healthy(container, url, sha="a" * 40, timeout=30)  # type: ignore[arg-type]

    message = str(error.value)
    assert "exited with code 3 after 0." in message or "exited with code 3 after 1." in message
    assert f"before {url} answered" in message
    assert "cannot open /data/app.db" in message
    assert "did not become healthy" not in message


def test_a_container_that_never_answers_times_out_with_the_last_attempt(client: object) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    sleeper = client.containers.run(  # type: ignore[attr-defined]
        BASE_IMAGE,
        ["python3", "-c", "import time; print('warming up', flush=True); time.sleep(60)"],
        name=f"slipway-test-slow-{uuid.uuid4().hex[:8]}",
        network_mode="none",
        detach=True,
    )
    try:
        with pytest.raises(DeployError) as error:
            wait_healthy(sleeper, url, sha="a" * 40, timeout=1)
    finally:
        sleeper.remove(force=True)

    message = str(error.value)
    assert f"did not become healthy within 1 s at {url}: ConnectError" in message
    assert "warming up" in message


SLOW_START = """
import http.server, sys, time
time.sleep(1.5)
class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{}')
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Healthy).serve_forever()
"""


def test_a_slow_start_is_probed_closely_but_inspected_seldom(
    client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each inspection costs the engine CPU that the starting container and a push need."""
    port = free_port()
    container = client.containers.run(  # type: ignore[attr-defined]
        BASE_IMAGE,
        ["python3", "-c", SLOW_START, str(port)],
        name=f"slipway-test-slow-{uuid.uuid4().hex[:8]}",
        network_mode="host",
        detach=True,
    )
    reads: list[float] = []
    reload = container.reload

    def counted() -> None:
        reads.append(0)
        reload()

    monkeypatch.setattr(container, "reload", counted)
    try:
        wait_healthy(container, f"http://127.0.0.1:{port}/healthz", sha="a" * 40, timeout=30)
    finally:
        container.remove(force=True)
    assert 2 <= len(reads) <= 10  # every 0.25 s, and once more when it answered; not every 50 ms
