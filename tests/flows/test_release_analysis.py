"""A release whose new version answers 500 after the switch rolls itself back.

Real parts throughout: Prefect, the Docker engine, the registry, and
Prometheus with the blackbox exporter and Alertmanager, configured as
`slipway up` configures them (short intervals). The service is the
python-service template with prometheus-client copied into the image
(standing in for the template's wheelhouse); its broken version passes its
health check but answers 500 on ``/``.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import prometheus_client
import pytest

from blocks import DEFAULT_DOCUMENT
from flows.delivery import build_test_deploy
from slipway.errors import AnalysisFailed
from tasks.release import deployment_history
from testkit.monitoring import FAST, Stack, monitoring_stack
from tests.flows.delivery_fixtures import Delivery, delivery_platform, wait_for

pytestmark = pytest.mark.docker

REF = "refs/heads/main"
BROKEN_ROOT = """        elif route == "/" and os.environ.get("PORT"):
            self._send(500, {"error": "broken release"})
        elif route == "/":"""


@pytest.fixture(scope="module")
def delivery(
    prefect_server: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Delivery]:
    with delivery_platform(request, tmp_path_factory) as configured:
        yield configured


@pytest.fixture(scope="module")
def stack(delivery: Delivery, prefect_server: str) -> Iterator[Stack]:
    """The monitoring stack of the delivery platform's home, on the ports its flows look at."""
    with (
        monitoring_stack(delivery.home.root, api_url=prefect_server) as running,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("SLIPWAY_HOME", str(delivery.home.root))
        for name, port in running.layout.ports.as_dict().items():
            if name != "prefect":
                env.setenv(f"SLIPWAY_{name.upper()}_PORT", str(port))
        yield running


def with_metrics(delivery: Delivery, tree: Path, *, broken: bool) -> None:
    """Put prometheus-client into the image, and optionally break / after the switch."""
    # Into the interpreter's site directory: in /srv/service, unittest would take it for tests.
    shutil.copytree(Path(prometheus_client.__file__).parent, tree / "vendor" / "prometheus_client")
    dockerfile = tree / "Dockerfile"
    text = dockerfile.read_text()
    site = "/usr/lib/python3/dist-packages/prometheus_client/"
    assert "COPY app/ app/" in text
    dockerfile.write_text(
        text.replace("COPY app/ app/", f"COPY app/ app/\nCOPY vendor/prometheus_client/ {site}")
    )
    if broken:
        server = tree / "app" / "server.py"
        code = server.read_text()
        patched = code.replace('        elif route == "/":', BROKEN_ROOT, 1)
        assert patched != code, "the template's server.py changed; update this test"
        server.write_text(patched)


def commit(delivery: Delivery, marker: str, *, broken: bool) -> str:
    from blocks import GitServer
    from tasks.git import publish_directory
    from tests.flows.delivery_fixtures import variant

    tree = variant(delivery.source, delivery.scratch / marker, marker=marker)
    with_metrics(delivery, tree, broken=broken)
    return publish_directory(GitServer.load_default(), delivery.service, tree, message=marker)


@contextlib.contextmanager
def traffic(url: str) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=2) as http:
            while not stop.wait(0.05):
                with contextlib.suppress(httpx.HTTPError):
                    http.get(url)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def test_a_release_answering_500_after_the_switch_is_rolled_back_by_itself(
    delivery: Delivery, stack: Stack
) -> None:
    FAST.save(DEFAULT_DOCUMENT, overwrite=True)
    good = commit(delivery, "good", broken=False)
    with traffic(delivery.url("dev", "")):
        first = build_test_deploy(delivery.service, good, REF)
        assert first.outcome == "succeeded"  # type: ignore[union-attr]
        bad = commit(delivery, "bad", broken=True)
        # Whichever the analysis sees first: the 5xx ratio, or the alert it fires.
        broken = r"(5xx|SlipwayHighErrorRatio).*rolled back to " + good[:12]
        with pytest.raises(AnalysisFailed, match=broken):
            build_test_deploy(delivery.service, bad, REF)

    assert httpx.get(delivery.url("dev"), timeout=5).json()["version"] == good
    history = deployment_history(delivery.service, "dev")
    assert [(r.action, r.outcome, r.sha) for r in history[:3]] == [
        ("rollback", "succeeded", good),
        ("build-test-deploy", "failed", bad),
        ("build-test-deploy", "succeeded", good),
    ]
    assert "release analysis" in history[0].detail and "release analysis" in history[1].detail
    wait_for(
        lambda: stack.query(
            f'probe_success{{service="{delivery.service}", sha="{good[:12]}"}} == 1'
        ),
        timeout=30,
        what="Prometheus probing the version rolled back to",
    )
