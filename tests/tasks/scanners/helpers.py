"""Values and fakes shared by the scanner tests: findings, results and summaries without tools."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from slipway.errors import ScanError
from tasks.scanners import Finding, Scanner, ScanResult, ScanStatus, Severity
from tasks.scanners.accepted import AcceptedRisks
from tasks.scanners.compare import compare
from tasks.scanners.history import save_scan
from tasks.scanners.report import ScanSummary, build_summary
from tasks.scanners.runner import ScanRun
from tasks.scanners.sbom import SbomResult
from tasks.storage import ObjectStore

SCANNED_AT = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)

B602 = Finding("bandit", "B602", Severity.HIGH, "app/ops.py", 8, "subprocess call with shell=True")
B404 = Finding("bandit", "B404", Severity.LOW, "app/ops.py", 3, "Consider the subprocess module.")
PYSEC = Finding(
    "pip-audit",
    "PYSEC-2018-28",
    Severity.UNKNOWN,
    "requirements.txt",
    None,
    "requests 2.19.0 is affected by PYSEC-2018-28",
    fix_version="2.20.0",
    aliases=("CVE-2018-18074", "GHSA-x84v-xcm2-53pg"),
)
CKV = Finding("checkov", "CKV_AWS_20", Severity.HIGH, "infra/main.tf", 2, "public READ ACL")


class FakeScanner(Scanner):
    """A scanner whose outcome the test chooses."""

    def __init__(self, name: str, outcome: tuple[Finding, ...] | ScanError) -> None:
        self.name = name
        self.outcome = outcome

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        if isinstance(self.outcome, ScanError):
            raise self.outcome
        return self.outcome


def result(tool: str, *findings: Finding, error: str | None = None) -> ScanResult:
    if error is not None:
        return ScanResult(tool, ScanStatus.ERRORED, (), error, 0.5)
    return ScanResult(
        tool, ScanStatus.FINDINGS if findings else ScanStatus.CLEAN, findings, None, 0.5
    )


def summary(
    *results: ScanResult,
    baseline: list[Finding] | None = None,
    accepted: AcceptedRisks | None = None,
    sha: str = "b" * 40,
) -> ScanSummary:
    sbom = SbomResult("cyclonedx-py", ScanStatus.CLEAN, b"{}", 0, None, 0.1)
    return build_summary(
        service="payments",
        sha=sha,
        ref="main",
        default_branch=True,
        scanned_at=SCANNED_AT,
        run=ScanRun(tuple(results), sbom, 1.0),
        comparison=compare(results, baseline),
        baseline_sha="a" * 40 if baseline is not None else None,
        accepted=accepted or AcceptedRisks(),
    )


def bom(*pins: str, purl: bool = True) -> str:
    """A CycloneDX document listing ``pins`` such as ``requests==2.19.0``."""
    components = []
    for pin in pins:
        name, version = pin.split("==")
        item = {"type": "library", "name": name, "version": version}
        if purl:
            item["purl"] = f"pkg:pypi/{name.lower()}@{version}"
        components.append(item)
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": components})


def stored(
    store: ObjectStore, service: str, sha: str, *pins: str, scanned_at: datetime = SCANNED_AT
) -> ScanSummary:
    """A default-branch scan of ``service`` at ``sha`` whose SBOM lists ``pins``, stored as a scan does."""
    scan = summary(result("pip-audit"), sha=sha).model_copy(
        update={"service": service, "scanned_at": scanned_at}
    )
    sarif = {"version": "2.1.0", "runs": []}
    save_scan(store, scan, sarif=sarif, sbom=bom(*pins).encode(), on_default_branch=True)
    return scan
