"""Service logs: rotated by the engine, read with filters and follow, attached when a release fails."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.cli import main
from slipway.errors import InvalidRequest, ServiceNotFound
from tasks.monitoring.logs import attach_log_tail, log_lines, parse_since, service_container
from testkit.monitoring import run_service_container
from testkit.platform import free_port, wait_for
from tests.flows.delivery_fixtures import BASE_IMAGE, docker_or_skip

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Any, str, int]]:
    client = docker_or_skip()
    service, port = f"logs-{uuid.uuid4().hex[:6]}", free_port()
    container = run_service_container(client, BASE_IMAGE, service, "dev", port)
    try:
        wait_for(lambda: _get(port, "/healthz"), timeout=20, what="the service")
        yield client, container, service, port
    finally:
        container.remove(force=True)


def _get(port: int, path: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_containers_log_with_the_engines_rotation(served: tuple[Any, Any, str, int]) -> None:
    _, container, _, _ = served
    container.reload()
    config = container.attrs["HostConfig"]["LogConfig"]
    assert config == {"Type": "local", "Config": {"max-file": "3", "max-size": "10m"}}


def test_lines_are_found_by_service_filtered_and_followed(
    served: tuple[Any, Any, str, int],
) -> None:
    client, _, service, port = served
    container = service_container(client, service, "dev")
    _get(port, "/wanted-line")
    wait_for(
        lambda: list(log_lines(container, grep="/wanted-line", follow=False)),
        timeout=10,
        what="the request in the log",
    )
    assert all("/wanted-line" in line for line in log_lines(container, grep="/wanted-line"))
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(log_lines(container, since=future)) == []

    followed: list[str] = []

    def follow() -> None:
        for line in log_lines(container, follow=True, grep="/followed"):
            followed.append(line)
            return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)
    _get(port, "/followed")
    reader.join(timeout=10)
    assert followed and "/followed" in followed[0]


def test_unknown_environment_names_where_the_service_runs(
    served: tuple[Any, Any, str, int],
) -> None:
    client, _, service, _ = served
    with pytest.raises(ServiceNotFound, match="it has containers in: dev"):
        service_container(client, service, "prod")


def test_since_takes_durations_and_times() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now=now) == now - timedelta(minutes=10)
    assert parse_since("2h", now=now) == now - timedelta(hours=2)
    assert parse_since("2026-01-01T11:00:00") == datetime(2026, 1, 1, 11, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="neither a duration nor a time"):
        parse_since("yesterday")


def test_a_failed_candidates_log_is_attached_to_the_run(
    served: tuple[Any, Any, str, int], prefect_server: str
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    _, container, service, port = served
    _get(port, "/before-it-failed")

    @flow
    def release() -> str:
        return attach_log_tail(container, why="it did not answer /healthz")

    tail = wait_for(lambda: "/before-it-failed" in release() and release(), timeout=10, what="tail")
    assert "/before-it-failed" in tail
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=200)
    [found] = [a for a in artifact if a.key == f"logs-{service}--dev"]
    assert "it did not answer /healthz" in str(found.data) and "/before-it-failed" in str(
        found.data
    )


def test_the_logs_command_needs_a_running_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "logs", "svc", "--since", "10m"]) == 1
    assert "Slipway is not running" in capsys.readouterr().err
    assert main(["--home", str(tmp_path), "logs", "Not_A_Name"]) == 1
    assert "Not_A_Name' is not a DNS-1123 label" in capsys.readouterr().err
