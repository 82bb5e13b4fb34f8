"""Release analysis against real Prometheus and blackbox, watching the real template service.

The service is the python-service template rendered and run on the host (its
/metrics needs prometheus-client, which this environment has), registered as
a scrape and probe target the way `tasks.monitoring.targets` writes them.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.monitoring.analysis import analyse
from tasks.monitoring.prometheus import Prometheus
from tasks.monitoring.targets import ServiceTarget, write_targets
from testkit.monitoring import FAST, Stack, monitoring_stack
from testkit.platform import free_port, wait_for

SHA = "a" * 40
BROKEN_ROOT = """        elif route == "/":
            self._send(500, {"error": "broken release"})
        elif route == "/unused":"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No Prefect here: the analysis only asks Prometheus.
    with monitoring_stack(tmp_path_factory.mktemp("stack"), api_url="http://127.0.0.1:9/api") as s:
        yield s


def rendered_service(root: Path, *, broken: bool) -> Path:
    from tasks.templates import ServiceAnswers, render_service

    answers = ServiceAnswers(service_name="watched", owner="group:x", port=8080)
    path = render_service("python-service", root, answers).path
    if broken:  # / answers 500 while /healthz stays fine: it passes its health check
        server = path / "app" / "server.py"
        code = server.read_text()
        patched = code.replace('        elif route == "/":', BROKEN_ROOT, 1)
        assert patched != code
        server.write_text(patched)
    return path


class Traffic:
    """Requests to / every 50 ms while the analysis watches."""

    def __init__(self, url: str) -> None:
        self.url, self._stop = url, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as http:
            while not self._stop.wait(0.05):
                with contextlib.suppress(httpx.HTTPError):
                    http.get(self.url)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start(code: Path, port: int, sha: str = SHA) -> subprocess.Popen[bytes]:
    """The service in ``code`` as a process on ``port``, once it answers /healthz."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.server"],
        cwd=code,
        env={"PORT": str(port), "GIT_SHA": sha, "PATH": ""},
        stderr=subprocess.DEVNULL,
    )
    health = f"http://127.0.0.1:{port}/healthz"
    wait_for(lambda: _answers(health), timeout=20, what="the service")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


def serve(
    stack: Stack, root: Path, *, broken: bool
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    port, service = free_port(), f"svc-{uuid.uuid4().hex[:6]}"
    process = start(rendered_service(root, broken=broken), port)
    try:
        target = ServiceTarget(service, "dev", SHA, "x", f"127.0.0.1:{port}")
        write_targets(stack.layout, [target])
        wait_for(
            lambda: stack.query(f'up{{service="{service}"}} == 1'), timeout=20, what="a scrape"
        )
        yield service, port, process
    finally:
        stop(process)
        write_targets(stack.layout, [])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_version_that_answers_500_fails_its_analysis_with_the_reason(
    stack: Stack, tmp_path: Path
) -> None:
    for service, port, _ in serve(stack, tmp_path / "svc", broken=True):
        with Traffic(f"http://127.0.0.1:{port}/"):
            began = time.monotonic()
            verdict = analyse(
                Prometheus(stack.layout.prometheus_url, stack.layout.basic_auth()),
                FAST,
                service=service,
                environment="dev",
                sha=SHA,
            )
        assert verdict.failed, verdict
        # /healthz (the probe's) answers 200, so not quite all answers are 5xx.
        assert re.match(r"(\d+)% of its answers were 5xx", verdict.reason), verdict.reason
        assert int(verdict.reason.partition("%")[0]) > 50
        assert time.monotonic() - began < FAST.analysis_window_seconds + 2


def test_a_healthy_version_passes_after_the_whole_window(stack: Stack, tmp_path: Path) -> None:
    for service, port, _ in serve(stack, tmp_path / "svc", broken=False):
        with Traffic(f"http://127.0.0.1:{port}/"):
            verdict = analyse(
                Prometheus(stack.layout.prometheus_url, stack.layout.basic_auth()),
                FAST,
                service=service,
                environment="dev",
                sha=SHA,
            )
        assert verdict.outcome == "passed", verdict
        assert verdict.seconds >= FAST.analysis_window_seconds
        assert verdict.looks >= FAST.analysis_window_seconds / FAST.analysis_interval_seconds


def test_a_newer_version_that_failed_to_switch_does_not_fail_the_serving_ones_analysis(
    stack: Stack, tmp_path: Path
) -> None:
    """What answered on the port while a newer release's switch failed there is not the
    serving version's doing.

    The scrape target names the port, with the serving version's commit as a
    label: a newer container started there counts under that label until the
    targets are rewritten. Its 5xx failed the older version's analysis, which
    then rolled back a healthy release. The analysis now counts only what was
    answered since the watched container last started.
    """
    prometheus = Prometheus(stack.layout.prometheus_url, stack.layout.basic_auth())
    for service, port, serving in serve(stack, tmp_path / "svc", broken=False):
        switch = FailedSwitch(stack, tmp_path, service, port, serving)
        try:
            with Traffic(f"http://127.0.0.1:{port}/"):
                verdict = analyse(
                    prometheus,
                    FAST,
                    service=service,
                    environment="dev",
                    sha=SHA,
                    served_since=switch.served_since,
                    sleep=switch.sleep,
                )
        finally:
            switch.stop()
        assert switch.restarted is not None, "the newer version never answered"
        assert verdict.outcome == "passed", verdict


class FailedSwitch:
    """At the analysis' first pause, a newer release's switch fails on the watched port.

    As `tasks.release.blue_green._switch`: the serving process stops, the newer
    one (answering 500) serves on the port until Prometheus has counted its
    5xx under the serving version's label, then it is given up and the
    serving version starts again.
    """

    def __init__(
        self, stack: Stack, root: Path, service: str, port: int, serving: subprocess.Popen[bytes]
    ) -> None:
        self.stack, self.service, self.port, self.serving = stack, service, port, serving
        self.newer = rendered_service(root / "newer", broken=True)
        self.again = rendered_service(root / "again", broken=False)
        self.restarted: tuple[float, subprocess.Popen[bytes]] | None = None

    def served_since(self) -> float:
        return float("-inf") if self.restarted is None else self.restarted[0]

    def sleep(self, seconds: float) -> None:
        if self.restarted is not None:
            time.sleep(seconds)
            return
        stop(self.serving)
        failing = start(self.newer, self.port, sha="b" * 40)
        counted = (
            f'increase(http_requests_total{{service="{self.service}", sha="{SHA[:12]}", '
            'status="500"}[1m]) > 0'
        )
        with Traffic(f"http://127.0.0.1:{self.port}/"):
            wait_for(lambda: self.stack.query(counted), timeout=20, what="5xx under our label")
        stop(failing)
        at = time.time()
        self.restarted = (at, start(self.again, self.port))

    def stop(self) -> None:
        if self.restarted is not None:
            stop(self.restarted[1])


def test_without_prometheus_the_analysis_is_inconclusive_and_says_so() -> None:
    verdict = analyse(
        Prometheus(f"http://127.0.0.1:{free_port()}"), FAST, service="s", environment="dev", sha=SHA
    )
    assert verdict.outcome == "inconclusive" and not verdict.failed
    assert "does not answer" in verdict.reason


def test_analysis_window_zero_turns_it_off() -> None:
    off = FAST.model_copy(update={"analysis_window_seconds": 0})
    verdict = analyse(
        Prometheus("http://127.0.0.1:9"), off, service="s", environment="dev", sha=SHA
    )
    assert verdict.outcome == "skipped"


def test_the_monitoring_parts_let_in_only_the_platform_login(stack: Stack) -> None:
    """A service on this host cannot query, silence, probe or stop them without the home's login."""
    prometheus, alertmanager = stack.layout.prometheus_url, stack.layout.alertmanager_url
    blackbox = f"http://127.0.0.1:{stack.layout.ports.blackbox}"
    silence = {
        "matchers": [{"name": "service", "value": "watched", "isRegex": False}],
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "intruder",
        "comment": "hide my alerts",
    }
    refused = [
        httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}),
        httpx.post(f"{prometheus}/-/quit"),
        httpx.post(f"{alertmanager}/api/v2/silences", json=silence),
        httpx.get(f"{blackbox}/probe", params={"target": prometheus, "module": "http_2xx"}),
        httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, auth=("slipway", "guess")),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert stack.layout.password_file.stat().st_mode & 0o777 == 0o600
    assert stack.layout.password_file.read_text() not in stack.layout.web_config.read_text()
    assert stack.query("up") is not None  # the platform's own login is let in
    assert Prometheus(prometheus, stack.layout.basic_auth()).ready()
    assert not Prometheus(prometheus).ready()
