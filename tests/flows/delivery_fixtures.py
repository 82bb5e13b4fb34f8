"""Real parts for the delivery tests: a registry, a configured platform and a service repository.

Imported by the delivery tests (flows and tasks) rather than put in a conftest,
so other test modules in these directories are not affected. What the
delivery bench needs too lives in `testkit.delivery`.

Everything is module-scoped: one registry, one service repository and its
catalog entry per test module; every image of the module reuses the engine's
layer cache, so a build after the first takes about a second.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from slipway.errors import DockerUnavailable, MissingDependency
from slipway.home import SlipwayHome
from testkit.delivery import (
    BASE_IMAGE,
    HEALTH_TIMEOUT,
    REGISTRY_LOGIN,
    catalogue_service,
    configure_delivery,
    registry_block,
    remove_service_containers,
    remove_service_images,
    render_source,
    running_registry,
)
from testkit.platform import free_port, wait_for
from tests.conftest import missing_part

__all__ = [
    "BASE_IMAGE",
    "HEALTH_TIMEOUT",
    "Delivery",
    "Poller",
    "container_events",
    "delivery_platform",
    "docker_or_skip",
    "manifest_digest",
    "registry_block",
    "remove_service_containers",
    "remove_service_images",
    "render_source",
    "shared_registry",
    "variant",
    "wait_for",
]

_MANIFESTS = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def container_events(client: Any, since: datetime, **filters: object) -> list[dict[str, Any]]:
    """The engine's container events since ``since``, matching ``filters`` (e.g. ``event``, ``label``).

    The engine takes whole seconds, so the window opens a second early and
    closes a second after now; callers tell their own events apart.
    """
    return list(
        client.events(
            since=since - timedelta(seconds=1),
            until=datetime.now(UTC) + timedelta(seconds=1),
            filters={"type": "container", **filters},
            decode=True,
        )
    )


def docker_or_skip():  # type: ignore[no-untyped-def]
    """A client of the local engine holding the base image; else skipped, or failed under CI."""
    from blocks import DeployTarget
    from tasks.base_image import image_present
    from tasks.containers import docker_client

    try:
        client = docker_client(DeployTarget(), timeout=60)
    except DockerUnavailable as e:
        missing_part(f"no Docker engine: {e.message}", fix="run `make setup` as root")
    if not image_present(client, BASE_IMAGE):
        missing_part(f"the base image {BASE_IMAGE} is not built", fix="run `make setup` as root")
    return client


_SHARED: dict[str, str] = {}


def shared_registry(request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> str:
    """One registry for every delivery test module of the session.

    The first push to a registry uploads the base image's layers, which costs
    seconds (the engine compresses them); later pushes to any repository of
    the same registry mount those layers instead.
    """
    if "url" not in _SHARED:
        stack = ExitStack()
        try:
            _SHARED["url"] = stack.enter_context(running_registry(factory.mktemp("registry")))
        except MissingDependency as e:
            missing_part(e.message, fix=e.hint or "run `make setup` as root")

        def stop() -> None:
            _SHARED.clear()
            stack.close()

        request.session.addfinalizer(stop)
    return _SHARED["url"]


def manifest_digest(registry: str, service: str, tag: str) -> str | None:
    """The digest the registry holds for ``service:tag``, or None when it has none."""
    response = httpx.get(
        f"http://{registry}/v2/{service}/manifests/{tag}",
        headers={"Accept": _MANIFESTS},
        timeout=10,
        auth=(REGISTRY_LOGIN.username, REGISTRY_LOGIN.password.get_secret_value()),
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


# -- the service's source, in variants ------------------------------------------------

FAILING_TEST = """import unittest


class ReleaseTest(unittest.TestCase):
    def test_release_is_ready(self):
        self.assertEqual(1, 2, "deliberately failing")
"""

NETWORK_TEST = """import socket
import unittest


class NetworkTest(unittest.TestCase):
    def test_reaches_the_host(self):
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
"""


SLOW_TEST = """import time
import unittest


class SlowTest(unittest.TestCase):
    def test_takes_a_while(self):
        time.sleep({seconds})
"""


INSECURE_CODE = """import subprocess


def run(command: str) -> int:
    return subprocess.call(command, shell=True)
"""


def variant(
    source: Path,
    destination: Path,
    *,
    marker: str,
    failing_tests: bool = False,
    unhealthy: bool = False,
    network_test_port: int | None = None,
    insecure: bool = False,
    docs: str | None = None,
    slow_tests: float | None = None,
    drain_seconds: float | None = None,
) -> Path:
    """A copy of ``source`` with a change that makes a new commit, and optional breakage.

    ``docs``: appended to ``docs/index.md``, which the image does not contain; with
    the same ``marker`` as an earlier commit, the two images have the same layers.

    ``slow_tests``: the tests take at least this many seconds, which holds the
    run between its build and its push for as long.

    ``unhealthy``: /healthz answers 503 whenever PORT is set, i.e. when deployed,
    while the tests (which set no PORT) still pass.

    ``drain_seconds``: on SIGTERM the server lets its port go, then takes this
    long to exit, as one that drains its requests does.
    """
    shutil.copytree(source, destination)
    (destination / "app" / "release.txt").write_text(marker + "\n")
    if failing_tests:
        (destination / "tests" / "test_release.py").write_text(FAILING_TEST)
    if network_test_port is not None:
        text = NETWORK_TEST.replace("{port}", str(network_test_port))
        (destination / "tests" / "test_network.py").write_text(text)
    if slow_tests is not None:
        text = SLOW_TEST.replace("{seconds}", str(slow_tests))
        (destination / "tests" / "test_slow.py").write_text(text)
    if docs is not None:
        with (destination / "docs" / "index.md").open("a", encoding="utf-8") as page:
            page.write(f"\n{docs}\n")
    if insecure:  # bandit B602, high: a shell built from input
        (destination / "app" / "ops.py").write_text(INSECURE_CODE)
    if unhealthy:
        server = destination / "app" / "server.py"
        code = server.read_text()
        broken = code.replace(
            '        if route == "/healthz":',
            '        if route == "/healthz" and os.environ.get("PORT"):\n'
            '            self._send(503, {"status": "never ready"})\n'
            '        elif route == "/healthz":',
        )
        assert broken != code, "the template's server.py changed; update this test helper"
        server.write_text(broken)
    if drain_seconds is not None:
        server = destination / "app" / "server.py"
        code = server.read_text()
        draining = code.replace(
            "    def stop(signum: int, frame: object) -> None:\n",
            "    def stop(signum: int, frame: object) -> None:\n"
            f"        server.socket.close()\n        time.sleep({drain_seconds})\n",
        )
        assert draining != code, "the template's server.py changed; update this test helper"
        server.write_text(draining)
    return destination


# -- a configured platform with one service ------------------------------------------


@dataclass
class Delivery:
    """A platform configured on the test server, with one catalogued service."""

    home: SlipwayHome
    registry: str
    service: str
    ports: dict[str, int]
    """The service's port per environment."""
    source: Path
    scratch: Path
    client: object = field(repr=False)

    def url(self, environment: str = "dev", path: str = "healthz") -> str:
        return f"http://127.0.0.1:{self.ports[environment]}/{path}"

    def commit(self, marker: str | None = None, **breakage: object) -> str:
        """Push a new commit of the service to its repository's default branch; returns the sha."""
        from blocks import GitServer
        from tasks.git import publish_directory

        marker = marker or uuid.uuid4().hex
        tree = variant(self.source, self.scratch / uuid.uuid4().hex, marker=marker, **breakage)  # type: ignore[arg-type]
        return publish_directory(GitServer.load_default(), self.service, tree, message=marker)


@contextmanager
def delivery_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Delivery]:
    """A platform, registry and one service (dev, staging and prod on their own ports).

    Needs the ``prefect_server`` fixture; use it from a module-scoped fixture.
    """
    client = docker_or_skip()
    root = tmp_path_factory.mktemp("delivery")
    name = f"dlv-{uuid.uuid4().hex[:8]}"
    registry = shared_registry(request, tmp_path_factory)
    with pytest.MonkeyPatch.context() as env:
        home = configure_delivery(root, registry)
        env.setenv("SLIPWAY_HOME", str(home.root))
        ports = {"dev": free_port(), "staging": free_port(), "prod": free_port()}
        source = render_source(root / "source", name, ports["dev"])
        catalogue_service(home, name, source, ports)
        scratch = Path(tempfile.mkdtemp(prefix="slipway-delivery-", dir=root))
        try:
            yield Delivery(home, registry, name, ports, source, scratch, client)
        finally:
            remove_service_containers(client, name)
            remove_service_images(client, f"{registry}/{name}")


# -- watching a service while it is switched -----------------------------------------


class Poller:
    """GETs a URL every few milliseconds in a thread and counts what fails.

    Use as a context manager; ``failures`` lists (time, error) of every request
    that did not get a 200, ``gaps`` the longest run of consecutive failures.
    """

    def __init__(self, url: str, *, interval: float = 0.02) -> None:
        self.url = url
        self.interval = interval
        self.ok = 0
        self.failures: list[tuple[float, str]] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.ok == 0 and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    response = http.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                        version = response.json().get("version", "")
                        if not self.versions or self.versions[-1] != version:
                            self.versions.append(version)
                    else:
                        self.failures.append((time.monotonic(), f"HTTP {response.status_code}"))
                except httpx.HTTPError as e:
                    self.failures.append((time.monotonic(), type(e).__name__))
                self._stop.wait(self.interval)

    def outage_seconds(self) -> float:
        """From the first to the last failed request; 0 without failures."""
        if not self.failures:
            return 0.0
        return self.failures[-1][0] - self.failures[0][0]
