"""What an OSV advisory says about itself: how severe it is and where it is fixed.

pip-audit's JSON carries no severity, so a dependency finding would be
``unknown`` and no gate rule or alert would ever see it. The advisory
itself usually says: GitHub's records name a severity in
``database_specific``, most others carry a CVSS vector, which the ``cvss``
library scores. Scans (`rate_findings`) and the advisory-impact match of
stored SBOMs (`tasks.scanners.impact`) rate the same way, so a finding has
one severity however it was found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from tasks.osv_mirror import Record, normalize_name
from tasks.scanners.base import ScanResult, Severity

__all__ = ["advisory_severity", "fix_versions", "rate_findings"]

logger = logging.getLogger(__name__)

_SCORERS: dict[str, Callable[[str], Severity]] = {
    "CVSS_V4": lambda vector: Severity.parse(CVSS4(vector).severity),
    "CVSS_V3": lambda vector: Severity.parse(CVSS3(vector).severities()[0]),
    "CVSS_V2": lambda vector: _v2(float(CVSS2(vector).base_score)),
}


def _v2(score: float) -> Severity:
    """NVD's bands for CVSS 2, which has no severity names of its own."""
    return Severity.HIGH if score >= 7 else Severity.MEDIUM if score >= 4 else Severity.LOW


def advisory_severity(record: Record | None) -> Severity:
    """The advisory's own severity word, else its best-rated CVSS vector, else ``unknown``."""
    if not record:
        return Severity.UNKNOWN
    specific = record.get("database_specific")
    if isinstance(specific, dict):
        named = Severity.parse(specific.get("severity"))
        if named is not Severity.UNKNOWN:
            return named
    rated = Severity.UNKNOWN
    for entry in record.get("severity") or []:
        scorer = _SCORERS.get(str(entry.get("type")))
        if scorer is None:
            continue
        try:
            found = scorer(str(entry.get("score", "")))
        except (CVSSError, ValueError, KeyError, IndexError) as e:
            logger.debug("unreadable %s vector in %s: %s", entry.get("type"), record.get("id"), e)
            continue
        rated = found if found.rank > rated.rank else rated
    return rated


def fix_versions(record: Record, ecosystem: str, key: str) -> list[str]:
    """Every ``fixed`` version the advisory names for the package ``key`` (normalised)."""
    found: list[str] = []
    for affected in record.get("affected", []):
        pkg = affected.get("package") or {}
        if pkg.get("ecosystem") != ecosystem:
            continue
        if normalize_name(ecosystem, str(pkg.get("name", ""))) != key:
            continue
        for rng in affected.get("ranges", []):
            found += [str(e["fixed"]) for e in rng.get("events", []) if "fixed" in e]
    return found


def rate_findings(
    results: tuple[ScanResult, ...], lookup: Callable[[str], Record | None]
) -> tuple[ScanResult, ...]:
    """The results with each pip-audit finding rated by its advisory (``lookup`` by id).

    A lookup that fails leaves the finding ``unknown``: the scan is not
    worse for it, only less informative.
    """
    rated: list[ScanResult] = []
    for result in results:
        if result.tool != "pip-audit" or not result.findings:
            rated.append(result)
            continue
        findings = tuple(
            replace(f, severity=advisory_severity(_safe(lookup, f.rule_id)))
            if f.severity is Severity.UNKNOWN
            else f
            for f in result.findings
        )
        rated.append(replace(result, findings=findings))
    return tuple(rated)


def _safe(lookup: Callable[[str], Record | None], vuln_id: str) -> Record | None:
    try:
        return lookup(vuln_id)
    except Exception as e:  # a relay to OSV online may fail in many ways; rating is best effort
        logger.warning("could not read advisory %s to rate it: %s", vuln_id, e)
        return None
