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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest

from blocks import DEFAULT_DOCUMENT
from flows.delivery import build_test_deploy
from slipway.errors import AnalysisFailed, DeployError
from tasks.release import (
    DeploymentRecord,
    deploy_release,
    deploy_slot,
    deployment_history,
    open_stage,
)
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


LONG = FAST.model_copy(update={"analysis_window_seconds": 120})
"""An analysis window long enough that a test waiting it out would time out."""


class InThread:
    """A flow call in a thread: its record, or what it raised."""

    def __init__(self, call: Callable[[], DeploymentRecord]) -> None:
        self.result: dict[str, Any] = {}

        def run() -> None:
            try:
                self.result["record"] = call()
            except BaseException as e:  # handed to the test
                self.result["error"] = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def record(self, timeout: float) -> DeploymentRecord:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the run did not end within {timeout} s"
        if "error" in self.result:
            raise self.result["error"]
        record: DeploymentRecord = self.result["record"]
        return record


def served(delivery: Delivery) -> str | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        version: str = httpx.get(delivery.url("dev"), timeout=2).json()["version"]
        return version
    return None


def free_slot_within(delivery: Delivery, seconds: float) -> None:
    """Take and free the release slot, failing if that took longer than ``seconds``."""
    began = time.monotonic()
    with deploy_slot(delivery.service, "dev"):
        waited = time.monotonic() - began
    assert waited < seconds, f"the release slot was held {waited:.0f} s into the analysis"


def run_log_says(commit: str, needle: str) -> bool:
    """Whether the running build-test-deploy of ``commit`` has logged ``needle``."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort, LogSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(
                limit=50, offset=0, sort=FlowRunSort.EXPECTED_START_TIME_DESC
            )
            if r.parameters.get("commit") == commit
        ]
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )
    return any(needle in log.message for log in logs)


def test_a_newer_release_deploys_during_the_analysis_and_supersedes_it(
    delivery: Delivery, stack: Stack
) -> None:
    LONG.save(DEFAULT_DOCUMENT, overwrite=True)
    older, newer = (commit(delivery, m, broken=False) for m in ("older", "newer"))
    first = InThread(lambda: build_test_deploy(delivery.service, older, REF))
    wait_for(lambda: served(delivery) == older, timeout=120, what="the older version switched")
    # Its analysis now watches for 120 s; the slot covers the switch only.
    free_slot_within(delivery, 30)
    FAST.save(DEFAULT_DOCUMENT, overwrite=True)  # the newer release's own analysis: 8 s
    second = build_test_deploy(delivery.service, newer, REF)

    assert second.outcome == "succeeded"  # type: ignore[union-attr]
    superseded = first.record(timeout=30)  # stopped at its next look, not after 120 s
    assert superseded.outcome == "superseded"
    assert newer[:12] in superseded.detail
    assert served(delivery) == newer
    history = deployment_history(delivery.service, "dev")
    assert [(r.action, r.outcome, r.sha) for r in history[:2]] == [
        ("build-test-deploy", "succeeded", newer),
        ("build-test-deploy", "superseded", older),
    ]


def test_an_analysis_failing_while_a_newer_release_switches_never_rolls_it_back(
    delivery: Delivery, stack: Stack
) -> None:
    FAST.save(DEFAULT_DOCUMENT, overwrite=True)
    newer = commit(delivery, "newer-staged", broken=False)
    staged = build_test_deploy(delivery.service, newer, REF, environment="staging")
    LONG.save(DEFAULT_DOCUMENT, overwrite=True)
    bad = commit(delivery, "bad-raced", broken=True)
    with traffic(delivery.url("dev", "")):
        failing = InThread(lambda: build_test_deploy(delivery.service, bad, REF))
        wait_for(lambda: served(delivery) == bad, timeout=120, what="the broken version switched")
        with deploy_slot(delivery.service, "dev"):  # a newer release switching
            wait_for(
                lambda: run_log_says(bad, "Release analysis failed"),
                timeout=60,
                what="the broken version's analysis failing",
            )
            stage = open_stage(delivery.service, "dev")
            deploy_release(
                stage.client,
                stage.release(newer, staged.image),  # type: ignore[union-attr]
                target=stage.target,
                health_timeout=stage.settings.health_timeout_seconds,
                reserved_ports=stage.reserved_ports,
            )
        record = failing.record(timeout=30)

    assert record.outcome == "superseded"
    assert "not rolled back" in record.detail and "release analysis" in record.detail
    assert served(delivery) == newer
    history = deployment_history(delivery.service, "dev")
    assert (history[0].action, history[0].outcome, history[0].sha) == (
        "build-test-deploy",
        "superseded",
        bad,
    )


RESTORED = FAST.model_copy(update={"analysis_window_seconds": 40, "analysis_probe_failures": 10})
"""Long enough to outlast a newer switch; the probe fails while that switch stops the old version."""


def unhealthy_on(delivery: Delivery, marker: str, port: int) -> str:
    """A commit healthy on any port but ``port``: there /healthz reports another version, / a 500.

    Prometheus counts what it answers on ``port`` under the label of the version
    that serves there: those 5xx must not fail that version's analysis.
    """
    from blocks import GitServer
    from tasks.git import publish_directory
    from tests.flows.delivery_fixtures import variant

    tree = variant(delivery.source, delivery.scratch / marker, marker=marker)
    with_metrics(delivery, tree, broken=False)
    server = tree / "app" / "server.py"
    code = server.read_text()
    patched = code.replace(
        '        if route == "/healthz":',
        f'        if route == "/healthz" and os.environ.get("PORT") == "{port}":\n'
        '            self._send(200, {"status": "ok", "version": "0" * 40})\n'
        '        elif route == "/healthz":',
    ).replace(
        '        elif route == "/":',
        f'        elif route == "/" and os.environ.get("PORT") == "{port}":\n'
        '            self._send(500, {"error": "fails on the real port"})\n'
        '        elif route == "/":',
        1,
    )
    assert patched.count(f'os.environ.get("PORT") == "{port}"') == 2, "update this test"
    server.write_text(patched)
    return publish_directory(GitServer.load_default(), delivery.service, tree, message=marker)


def test_a_newer_switch_that_fails_on_the_real_port_leaves_the_analysis_going(
    delivery: Delivery, stack: Stack
) -> None:
    FAST.save(DEFAULT_DOCUMENT, overwrite=True)
    failing_switch = unhealthy_on(delivery, "fails-on-dev-port", delivery.ports["dev"])
    staged = build_test_deploy(delivery.service, failing_switch, REF, environment="staging")
    RESTORED.save(DEFAULT_DOCUMENT, overwrite=True)
    current = commit(delivery, "restored", broken=False)
    first = InThread(lambda: build_test_deploy(delivery.service, current, REF))
    wait_for(lambda: served(delivery) == current, timeout=120, what="the version switched")
    with deploy_slot(delivery.service, "dev"):  # a newer release switching, and failing
        stage = open_stage(delivery.service, "dev")
        with traffic(delivery.url("dev", "")), pytest.raises(DeployError, match="was restarted"):
            deploy_release(
                stage.client,
                stage.release(failing_switch, staged.image),  # type: ignore[union-attr]
                target=stage.target,
                health_timeout=8,
                reserved_ports=stage.reserved_ports,
            )
        wait_for(lambda: served(delivery) == current, timeout=30, what="the old version restarted")
    record = first.record(timeout=90)

    assert record.outcome == "succeeded"  # not superseded: it serves, and was watched again
    assert run_log_says(current, "serves again: watching it again")
    history = deployment_history(delivery.service, "dev")
    assert (history[0].outcome, history[0].sha) == ("succeeded", current)
