"""The rendered service builds into an image that serves /healthz and passes its tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from slipway.errors import CommandError
from slipway.process import run
from tasks.templates import RenderedService, ServiceAnswers
from tests.conftest import BASE_IMAGE, missing_part
from tests.templates.conftest import HOSTILE, free_port

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker() -> None:
    try:
        run(["docker", "info"], timeout=20)
    except CommandError as e:
        missing_part(
            f"no Docker engine: `docker info` failed ({e.message})", fix="run `make setup` as root"
        )


@pytest.fixture
def image(docker: None, render: Callable[..., RenderedService], tmp_path: Path) -> Iterator[str]:
    """The rendered service built FROM the local base image, as the platform does: its
    wheelhouse in the context and no network; removed afterwards."""
    from blocks import DeployTarget
    from tasks.containers import docker_client
    from tasks.wheelhouse import prepare_wheelhouse

    answers = ServiceAnswers(service_name="image-svc", owner="team", description=HOSTILE)
    path: Path = render(answers).path
    client = docker_client(DeployTarget())
    prepare_wheelhouse(
        client, path, base_image=BASE_IMAGE, target=DeployTarget(), cache=tmp_path / "wheels"
    )
    tag = f"slipway-test/image-svc:{uuid.uuid4().hex[:12]}"
    run(
        [
            "docker",
            "build",
            "--network",
            "none",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            tag,
            ".",
        ],
        cwd=path,
        timeout=120,
    )
    yield tag
    run(["docker", "rmi", "-f", tag], check=False, timeout=60)


def test_container_answers_healthz_within_ten_seconds(image: str) -> None:
    name = f"slipway-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "-e",
            f"PORT={port}",
            "-e",
            "GIT_SHA=abc1234",
            image,
        ],
        timeout=60,
    )
    try:
        deadline = time.monotonic() + 10
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, run(["docker", "logs", name], check=False).stderr
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": "image-svc", "version": "abc1234"}
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).json()["description"] == HOSTILE
        # The HEALTHCHECK command works without curl in the image.
        run(["docker", "exec", name, "python3", "-m", "app.healthcheck"], timeout=30)
    finally:
        run(["docker", "rm", "-f", name], check=False, timeout=60)


def test_service_tests_pass_inside_the_image_without_network(image: str) -> None:
    result = run(
        ["docker", "run", "--rm", "--network", "none", image, "python3", "-m", "unittest", "-v"],
        timeout=60,
    )
    assert "Ran 4 tests" in result.stderr
    assert result.stderr.rstrip().endswith("OK")
