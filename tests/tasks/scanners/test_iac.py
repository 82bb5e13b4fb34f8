from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from slipway.errors import ScanError
from tasks.scanners import ScanStatus, Severity
from tasks.scanners.iac import IacScanner, _env, parse_report

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
    cli = shutil.which("checkov", path=str(Path(sys.executable).parent))
    assert cli is not None, "checkov's console script is missing beside the interpreter"

    runner = IacScanner().scan(insecure, timeout=240)
    own = IacScanner(executable=cli).scan(insecure, timeout=240)

    assert own.status is ScanStatus.FINDINGS, own.error
    assert set(own.findings) == set(runner.findings) and len(own.findings) == len(runner.findings)


def test_a_bucket_in_a_module_of_a_module_is_found(tmp_path: Path):
    infra = tmp_path / "infra"
    (infra / "modules" / "a").mkdir(parents=True)
    (infra / "modules" / "b").mkdir()
    (infra / "main.tf").write_text('module "reports" {\n  source = "./modules/a"\n}\n')
    (infra / "modules" / "a" / "main.tf").write_text('module "bucket" {\n  source = "../b"\n}\n')
    (infra / "modules" / "b" / "main.tf").write_text(
        'resource "aws_s3_bucket" "inner" {\n  bucket = "inner-reports"\n}\n\n'
        'resource "aws_s3_bucket_acl" "inner" {\n'
        '  bucket = aws_s3_bucket.inner.id\n  acl    = "public-read"\n}\n'
    )

    result = IacScanner().scan(tmp_path, timeout=240)

    assert result.status is ScanStatus.FINDINGS, result.error
    public = next(f for f in result.findings if f.rule_id == "CKV_AWS_20")
    assert public.file == "infra/modules/b/main.tf" and public.severity is Severity.HIGH


def test_terraform_without_a_resource_errors_the_scan(tmp_path: Path):
    # checkov reports nothing at all, which must not read as clean.
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "variables.tf").write_text('variable "region" {}\n')

    result = IacScanner().scan(tmp_path, timeout=240)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "checkov checked nothing in infra/" in result.error


def test_terraform_that_does_not_parse_errors_the_scan(tmp_path: Path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "main.tf").write_text('resource "aws_s3_bucket" "x" {\n  bucket = \n')

    result = IacScanner().scan(tmp_path, timeout=240)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "could not parse" in result.error
    assert "main.tf" in result.error


def test_a_missing_infra_directory_errors_the_scan(tmp_path: Path):
    result = IacScanner().scan(tmp_path, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "infra/ does not exist" in result.error


def test_an_infra_directory_without_terraform_errors_the_scan(tmp_path: Path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "README.md").write_text("later\n")

    result = IacScanner().scan(tmp_path, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "no .tf file" in result.error


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
