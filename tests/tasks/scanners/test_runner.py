from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from slipway.errors import ScanError
from tasks.scanners import Finding, ScanStatus
from tasks.scanners.runner import default_scanners, run_scanners
from tasks.scanners.sbom import SbomGenerator
from tests.conftest import Listener
from tests.tasks.scanners.helpers import B602, FakeScanner


class SlowScanner(FakeScanner):
    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        time.sleep(0.5)
        return super()._run(path, timeout=timeout)


class RecordingScanner(FakeScanner):
    """Notes when it starts and how many scanners run beside it."""

    lock = threading.Lock()
    started: ClassVar[list[str]] = []
    running = 0
    peak = 0

    def __init__(self, name: str, expected_seconds: float) -> None:
        super().__init__(name, ())
        self.expected_seconds = expected_seconds

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        cls = RecordingScanner
        with cls.lock:
            cls.started.append(self.name)
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        time.sleep(0.3)
        with cls.lock:
            cls.running -= 1
        return ()


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-core machine, and a `RecordingScanner` with nothing recorded yet."""
    monkeypatch.setattr("tasks.scanners.runner.cpu_cores", lambda: 2)
    monkeypatch.setattr(RecordingScanner, "started", [])
    monkeypatch.setattr(RecordingScanner, "running", 0)
    monkeypatch.setattr(RecordingScanner, "peak", 0)


def test_scanners_run_at_the_same_time_and_keep_their_order(
    insecure: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("tasks.scanners.runner.cpu_cores", lambda: 4)
    scanners = [SlowScanner("one", (B602,)), SlowScanner("two", ()), SlowScanner("three", ())]

    run = run_scanners(insecure, scanners, timeout=60)

    assert [r.tool for r in run.results] == ["one", "two", "three"]
    assert run.results[0].findings == (B602,)
    assert run.sbom.status is ScanStatus.CLEAN
    assert run.duration_seconds < 1.4 + run.sbom.duration_seconds


def test_the_slowest_tool_starts_first_and_no_more_run_than_there_are_cores(
    insecure: Path, two_cores: None
):
    scanners = [
        RecordingScanner("quick", 0.5),
        RecordingScanner("medium", 1.0),
        RecordingScanner("slow", 3.0),
    ]

    run = run_scanners(insecure, [*scanners, scanners[0]], timeout=60)

    # Two threads take the two slowest at once; which of them notes its start first is a race.
    assert set(RecordingScanner.started[:2]) == {"slow", "medium"}
    assert RecordingScanner.peak == 2
    assert [r.tool for r in run.results] == ["quick", "medium", "slow", "quick"]


def test_one_crashed_scanner_errors_only_itself(insecure: Path):
    scanners = [FakeScanner("ok", ()), FakeScanner("broken", ScanError("segfault"))]

    run = run_scanners(insecure, scanners, timeout=60, parallel=False)

    assert [(r.tool, r.status) for r in run.results] == [
        ("ok", ScanStatus.CLEAN),
        ("broken", ScanStatus.ERRORED),
    ]
    assert run.results[1].error == "segfault"


def test_without_an_osv_endpoint_the_dependency_scan_is_errored_with_the_reason(tmp_path: Path):
    scanners = default_scanners(osv_url=None, cache_dir=tmp_path, osv_error="mirror not synced")

    assert [s.name for s in scanners] == ["bandit", "pip-audit", "detect-secrets", "checkov"]
    outcome = scanners[1].scan(tmp_path, timeout=5)
    assert outcome.status is ScanStatus.ERRORED and outcome.error == "mirror not synced"


def test_a_missing_sbom_binary_is_an_errored_sbom(insecure: Path):
    run = run_scanners(
        insecure, [], sbom=SbomGenerator(executable="/nonexistent/cyclonedx-py"), timeout=30
    )

    assert run.sbom.status is ScanStatus.ERRORED


def test_scans_running_at_the_same_time_share_one_slot_per_core(insecure: Path, two_cores: None):

    def scan_one(service: str) -> None:
        scanners = [RecordingScanner(f"{service}-a", 2.0), RecordingScanner(f"{service}-b", 1.0)]
        run_scanners(insecure, scanners, timeout=60)

    services = [threading.Thread(target=scan_one, args=(name,)) for name in ("one", "two")]
    for thread in services:
        thread.start()
    for thread in services:
        thread.join(timeout=30)

    assert len(RecordingScanner.started) == 4
    assert RecordingScanner.peak == 2  # four tools of two scans, never more than two at once


class EnvironmentProbe(FakeScanner):
    """Runs a real command the way an adapter does, and reports what it could see and reach."""

    def __init__(self, port: int, home: Path) -> None:
        super().__init__("probe", ())
        self.outcome_args = (str(port), str(home))
        self.seen: dict[str, object] = {}

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        from slipway.process import run

        code = (
            "import json, os, socket, sys\n"
            "try:\n    socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=2)\n"
            "    reached = True\nexcept OSError:\n    reached = False\n"
            "print(json.dumps({'env': dict(os.environ), 'reached': reached,\n"
            "    'checkout': os.listdir(sys.argv[1]), 'home': os.path.exists(sys.argv[3]),\n"
            "    'docker': os.path.exists('/var/run/docker.sock')}))\n"
        )
        done = run([sys.executable, "-c", code, str(path), *self.outcome_args])
        self.seen = json.loads(done.stdout)
        return ()


def test_every_tool_of_a_scan_runs_confined_without_platform_secrets(
    insecure: Path, monkeypatch: pytest.MonkeyPatch, loopback_listener: Listener, tmp_path: Path
):
    home = tmp_path / ".slipway"
    home.mkdir()
    monkeypatch.setenv("SLIPWAY_HOME", str(home))
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_platform_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-platform-secret")
    probe = EnvironmentProbe(loopback_listener.port, home)

    run = run_scanners(insecure, [probe], timeout=60)

    assert run.results[0].status is ScanStatus.CLEAN, run.results[0].error
    assert "app" in probe.seen["checkout"]  # type: ignore[operator]  # it reads the checkout
    assert not probe.seen["reached"] and loopback_listener.hits == []
    assert not probe.seen["home"] and not probe.seen["docker"]
    assert "platform-secret" not in json.dumps(probe.seen["env"])
    assert "SLIPWAY_HOME" not in probe.seen["env"]
