from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipway.errors import ScanError
from tasks.scanners import ScanStatus, Severity
from tasks.scanners.bandit import BanditScanner, parse_report


def test_finds_exactly_the_known_hits_in_the_fixture_service(service: Path):
    result = BanditScanner().scan(service, timeout=60)

    assert result.status is ScanStatus.FINDINGS, result.error
    assert {f.rule_id for f in result.findings} == {"B404", "B602", "B105"}
    by_rule = {f.rule_id: f for f in result.findings}
    assert by_rule["B602"].severity is Severity.HIGH
    assert by_rule["B602"].file == "app/ops.py"
    assert by_rule["B602"].line == 8
    assert by_rule["B105"].severity is Severity.LOW
    # The password itself is redacted: reports and logs must not repeat it.
    assert by_rule["B105"].message == "Possible hardcoded password: '***'"
    assert all("hunter2" not in f.message for f in result.findings)
    assert by_rule["B602"].help_uri and "b602" in by_rule["B602"].help_uri
    assert all(f.tool == "bandit" and f.fix_version is None for f in result.findings)


def test_a_file_with_a_syntax_error_errors_the_scan_instead_of_passing(tmp_path: Path):
    (tmp_path / "good.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("def f(:\n")

    result = BanditScanner().scan(tmp_path, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "broken.py" in result.error
    assert "syntax error" in result.error


def test_a_missing_target_errors_the_scan(tmp_path: Path):
    result = BanditScanner().scan(tmp_path / "not-checked-out", timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "not-checked-out" in result.error


def test_a_scan_that_runs_out_of_time_is_errored_never_clean(service: Path):
    result = BanditScanner().scan(service, timeout=0.01)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "did not finish" in result.error


def test_a_directory_without_python_is_clean(tmp_path: Path):
    (tmp_path / "README.md").write_text("# docs only\n")

    assert BanditScanner().scan(tmp_path, timeout=60).status is ScanStatus.CLEAN


def test_a_missing_bandit_binary_errors_the_scan(service: Path):
    result = BanditScanner(executable="/nonexistent/bandit").scan(service, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "not installed" in result.error


def test_output_that_is_not_bandits_json_is_a_scan_error(tmp_path: Path):
    with pytest.raises(ScanError, match="not its JSON format"):
        parse_report("Traceback (most recent call last): ...", root=tmp_path)


def test_a_missing_target_in_bandits_own_errors_list_is_a_scan_error(tmp_path: Path):
    report = {
        "errors": [{"filename": "/gone", "reason": "No such file or directory"}],
        "results": [],
    }

    with pytest.raises(ScanError, match="No such file or directory"):
        parse_report(json.dumps(report), root=tmp_path)
