"""The base image: a new platform gets one the engine has; status and settings say and fix the rest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from blocks import DeployTarget
from slipway.errors import ConfigurationError
from tasks.base_image import check_base_image, ensure_base_image, local_base_image
from tests.conftest import BASE_IMAGE, free_port
from tests.flows.delivery_fixtures import docker_or_skip

pytestmark = pytest.mark.docker

ENGINE = DeployTarget()
DEAD = DeployTarget(docker_host="unix:///nonexistent/docker.sock")


@pytest.fixture(scope="module")
def present() -> Iterator[str]:
    """A tag of the test base image that only this module uses."""
    client = docker_or_skip()
    tag = f"slipway-test/base:{uuid.uuid4().hex[:12]}"
    client.images.get(BASE_IMAGE).tag(tag)
    yield tag
    client.images.remove(tag)
    client.close()


def absent() -> str:
    """An image in a registry on loopback that nothing serves: never in the engine, never pulled."""
    return f"127.0.0.1:{free_port()}/absent:{uuid.uuid4().hex[:8]}"


def test_a_new_platform_gets_the_first_candidate_the_engine_holds(
    present: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIPWAY_BASE_IMAGE", raising=False)
    missing = absent()
    assert local_base_image(ENGINE, candidates=(missing, present)) == present
    assert local_base_image(ENGINE, candidates=(present, BASE_IMAGE)) == present
    # Nothing there, or no engine: the first, which a build pulls where it can.
    assert local_base_image(ENGINE, candidates=(missing, absent())) == missing
    assert local_base_image(DEAD, candidates=(missing, present)) == missing


def test_the_environment_names_the_base_image_without_asking_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIPWAY_BASE_IMAGE", "registry.example/base:1")
    assert local_base_image(DEAD) == "registry.example/base:1"


def test_status_says_whether_the_engine_has_it_and_how_to_fix_it(present: str) -> None:
    healthy = check_base_image(ENGINE, present)
    assert healthy.healthy and healthy.name == "base-image" and not healthy.required

    missing = absent()
    unhealthy = check_base_image(ENGINE, missing)
    assert not unhealthy.healthy and not unhealthy.required
    assert (
        "service builds fail" in unhealthy.detail and f"docker pull {missing}" in unhealthy.detail
    )
    assert "slipway settings base-image local/python-base:bookworm" in unhealthy.detail

    unknown = check_base_image(DEAD, present)
    assert not unknown.healthy and "no Docker engine" in unknown.detail


def test_an_image_that_cannot_be_pulled_is_refused_with_the_fix(present: str) -> None:
    assert ensure_base_image(ENGINE, present) is False  # there already: nothing pulled
    missing = absent()
    with pytest.raises(ConfigurationError, match="cannot be pulled") as error:
        ensure_base_image(ENGINE, missing, timeout=60)
    assert "make setup" in str(error.value) and "--no-check" in str(error.value)
