from __future__ import annotations

import os
from pathlib import Path

import tasks.scanners as scanners
from slipway.errors import ScanError
from slipway.process import run
from tasks.scanners import Finding, Scanner, ScanStatus, Severity
from tasks.scanners.base import SCAN_NICENESS


class _Fake(Scanner):
    """A scanner whose outcome the test chooses."""

    name = "fake"

    def __init__(self, outcome: tuple[Finding, ...] | ScanError) -> None:
        self.outcome = outcome

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        if isinstance(self.outcome, ScanError):
            raise self.outcome
        return self.outcome


def _finding(*, line: int | None = 3, message: str = "Possible hardcoded password") -> Finding:
    return Finding("bandit", "B105", Severity.LOW, "app/ops.py", line, message)


def test_a_scanner_error_becomes_an_errored_result_with_its_message(tmp_path: Path):
    result = _Fake(ScanError("tool crashed")).scan(tmp_path, timeout=1)
    assert result.status is ScanStatus.ERRORED
    assert result.error == "tool crashed"
    assert result.findings == ()


def test_results_are_clean_only_without_findings(tmp_path: Path):
    assert _Fake(()).scan(tmp_path, timeout=1).status is ScanStatus.CLEAN
    found = _Fake((_finding(),)).scan(tmp_path, timeout=1)
    assert found.status is ScanStatus.FINDINGS
    assert found.findings == (_finding(),)
    assert found.error is None and found.duration_seconds >= 0


def test_fingerprint_ignores_moved_lines_but_not_rule_or_file():
    assert _finding(line=3).fingerprint == _finding(line=40).fingerprint
    assert _finding(message="x 2.19.0").fingerprint == _finding(message="x  2.19.1").fingerprint
    other_file = Finding(
        "bandit", "B105", Severity.LOW, "app/db.py", 3, "Possible hardcoded password"
    )
    assert _finding().fingerprint != other_file.fingerprint


def test_severity_words_map_onto_one_scale():
    assert Severity.parse("HIGH") is Severity.HIGH
    assert Severity.parse("moderate") is Severity.MEDIUM
    assert Severity.parse("UNDEFINED") is Severity.UNKNOWN
    assert Severity.parse(None) is Severity.UNKNOWN


def test_the_package_exports_what_it_declares():
    for name in scanners.__all__:
        assert hasattr(scanners, name)


class _Niceness(Scanner):
    """A tool that reports the CPU priority it runs at."""

    name = "niceness"

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        niceness = run(["nice"], timeout=timeout).stdout.strip()
        return (Finding("niceness", "N1", Severity.LOW, "-", None, niceness),)


def test_scanners_run_below_the_platforms_cpu_priority_so_a_push_build_comes_first(
    tmp_path: Path,
):
    result = _Niceness().scan(tmp_path, timeout=30)
    assert result.error is None
    assert int(result.findings[0].message) == os.nice(0) + SCAN_NICENESS > os.nice(0)
