from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipway.errors import ScanError
from tasks.scanners import ScanStatus, Severity
from tasks.scanners.secrets import SecretsScanner, parse_report


def test_finds_the_committed_aws_key_and_the_password_keyword(insecure: Path):
    result = SecretsScanner().scan(insecure, timeout=120)

    assert result.status is ScanStatus.FINDINGS, result.error
    found = {(f.rule_id, f.file, f.line, f.severity) for f in result.findings}
    assert found == {
        ("AWSKeyDetector", "config/deploy.env", 2, Severity.HIGH),
        ("KeywordDetector", "app/ops.py", 12, Severity.MEDIUM),
    }


def test_findings_never_carry_the_secret_itself(insecure: Path):
    result = SecretsScanner().scan(insecure, timeout=120)

    text = json.dumps([f.message for f in result.findings])
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "hunter2" not in text
    assert all("secret sha1" in f.message for f in result.findings)


def test_the_git_directory_of_a_checkout_is_not_scanned(insecure: Path):
    (insecure / ".git").mkdir()
    (insecure / ".git" / "packed-refs").write_text("token = 'AKIAIOSFODNN7EXAMPLE'\n")

    result = SecretsScanner().scan(insecure, timeout=120)

    assert not [f for f in result.findings if f.file.startswith(".git/")]


def test_a_missing_directory_errors_the_scan(tmp_path: Path):
    result = SecretsScanner().scan(tmp_path / "gone", timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "gone" in result.error


def test_a_missing_binary_errors_the_scan(insecure: Path):
    result = SecretsScanner(executable="/nonexistent/detect-secrets").scan(insecure, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "not installed" in result.error


def test_output_that_is_not_its_json_is_a_scan_error():
    with pytest.raises(ScanError, match="not its JSON format"):
        parse_report("Traceback (most recent call last):")
