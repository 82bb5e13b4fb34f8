from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipway.errors import ScanError
from tasks.scanners import ScanResult, ScanStatus, Severity
from tasks.scanners.iac import IacScanner, _env, parse_report
from tasks.scanners.toolenv import ToolEnvironment

FIXTURE_CHECKS = {
    "CKV_AWS_20",
    "CKV2_AWS_6",
    "CKV2_AWS_61",
    "CKV2_AWS_62",
    "CKV_AWS_18",
    "CKV_AWS_21",
    "CKV_AWS_144",
    "CKV_AWS_145",
}


def scan_files(root: Path, files: dict[str, str], *, timeout: float = 240) -> ScanResult:
    """Scan a checkout under ``root`` that holds only ``files`` (paths relative to it)."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return IacScanner().scan(root, timeout=timeout)


def errored(result: ScanResult) -> str:
    """The error of a scan that must have errored."""
    assert result.status is ScanStatus.ERRORED and result.error is not None, result
    return result.error


def test_finds_the_public_bucket_in_infra(insecure: Path):
    result = IacScanner().scan(insecure, timeout=240)

    assert result.status is ScanStatus.FINDINGS, result.error
    assert {f.rule_id for f in result.findings} == FIXTURE_CHECKS
    public = next(f for f in result.findings if f.rule_id == "CKV_AWS_20")
    assert public.severity is Severity.HIGH
    assert (public.file, public.line) == ("infra/main.tf", 2)
    assert "public READ" in public.message and "aws_s3_bucket.reports" in public.message
    lifecycle = next(f for f in result.findings if f.rule_id == "CKV2_AWS_61")
    assert lifecycle.severity is Severity.UNKNOWN  # offline checkov gives none


def test_checkovs_own_cli_finds_the_same(insecure: Path):
    # The default runs checkov's Terraform runner alone; its CLI must agree.
    cli = ToolEnvironment.default().executable("checkov")

    runner = IacScanner().scan(insecure, timeout=240)
    own = IacScanner(executable=cli).scan(insecure, timeout=240)

    assert own.status is ScanStatus.FINDINGS, own.error
    assert set(own.findings) == set(runner.findings) and len(own.findings) == len(runner.findings)


def test_a_bucket_in_a_module_of_a_module_is_found(tmp_path: Path):
    result = scan_files(
        tmp_path,
        {
            "infra/main.tf": 'module "reports" {\n  source = "./modules/a"\n}\n',
            "infra/modules/a/main.tf": 'module "bucket" {\n  source = "../b"\n}\n',
            "infra/modules/b/main.tf": 'resource "aws_s3_bucket" "inner" {\n  bucket = "inner"\n}\n\n'
            'resource "aws_s3_bucket_acl" "inner" {\n'
            '  bucket = aws_s3_bucket.inner.id\n  acl    = "public-read"\n}\n',
        },
    )

    assert result.status is ScanStatus.FINDINGS, result.error
    public = next(f for f in result.findings if f.rule_id == "CKV_AWS_20")
    assert public.file == "infra/modules/b/main.tf" and public.severity is Severity.HIGH


def test_terraform_without_a_resource_errors_the_scan(tmp_path: Path):
    # checkov reports nothing at all, which must not read as clean.
    result = scan_files(tmp_path, {"infra/variables.tf": 'variable "region" {}\n'})
    assert "checkov checked nothing in infra/" in errored(result)


def test_terraform_that_does_not_parse_errors_the_scan(tmp_path: Path):
    result = scan_files(
        tmp_path, {"infra/main.tf": 'resource "aws_s3_bucket" "x" {\n  bucket = \n'}
    )
    error = errored(result)
    assert "could not parse" in error and "main.tf" in error


def test_a_missing_infra_directory_errors_the_scan(tmp_path: Path):
    assert "infra/ does not exist" in errored(scan_files(tmp_path, {}, timeout=60))


def test_an_infra_directory_without_terraform_errors_the_scan(tmp_path: Path):
    result = scan_files(tmp_path, {"infra/README.md": "later\n"}, timeout=60)
    assert "no .tf file" in errored(result)


def test_checkov_is_kept_off_the_network():
    env = _env()
    assert env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] == "true"
    assert env["CHECKOV_PARALLELIZATION_TYPE"] == "none"
    assert "BC_API_KEY" not in env and "PRISMA_API_URL" not in env


def test_a_report_without_results_is_a_scan_error():
    summary_only = {"passed": 0, "failed": 0, "parsing_errors": 0, "resource_count": 0}
    with pytest.raises(ScanError, match="checkov checked nothing"):
        parse_report(json.dumps(summary_only), directory="infra")


def test_reports_of_several_frameworks_are_all_read():
    check = {
        "check_id": "CKV_AWS_57",
        "check_name": "S3 Bucket has an ACL defined which allows public WRITE access.",
        "file_path": "/main.tf",
        "file_line_range": [3, 6],
        "resource": "aws_s3_bucket_acl.x",
        "severity": None,
    }
    reports = [
        {"check_type": "terraform", "results": {"failed_checks": [check], "parsing_errors": []}},
        {"check_type": "secrets", "results": {"failed_checks": [], "parsing_errors": []}},
    ]

    (finding,) = parse_report(json.dumps(reports), directory="infra")

    assert finding.severity is Severity.CRITICAL and finding.file == "infra/main.tf"
    assert finding.line == 3
