"""Advisory impact from stored SBOMs: matching, recording, severities and changed advisories."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tasks.osv_mirror import OsvMirror
from tasks.scanners import ScanResult, Severity
from tasks.scanners.advisories import advisory_severity, rate_findings
from tasks.scanners.advisory_impact import record_impacts
from tasks.scanners.base import Reach
from tasks.scanners.dependencies import DependencyScanner
from tasks.scanners.history import load_summary, save_scan
from tasks.scanners.impact import (
    DEFAULT_BRANCH,
    ServiceVersion,
    match,
    parse_components,
    read_sboms,
    service_versions,
)
from tasks.scanners.sbom import SbomGenerator
from tasks.scanners.vulnerability_data import archive_digests, changed_advisories
from tasks.storage import LocalStore
from tests.tasks.scanners.conftest import OSV_RECORDS
from tests.tasks.scanners.helpers import PYSEC, bom, result, stored, summary

pytestmark = pytest.mark.timeout(120)


def records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(OSV_RECORDS.glob("*.json"))]


def test_components_come_from_purls_and_unversioned_ones_are_left_out():
    document = json.dumps(
        {
            "bomFormat": "CycloneDX",
            "components": [
                {"name": "Requests", "version": "2.19.0", "purl": "pkg:pypi/Requests@2.19.0"},
                {"name": "left-pad", "version": "1.3.0", "purl": "pkg:npm/left-pad@1.3.0"},
                {"name": "urllib3"},  # unpinned: nothing to match
                {"name": "Jinja2", "version": "2.8"},  # no purl: the requirements file's
            ],
        }
    ).encode()

    found = {(c.ecosystem, c.name, c.version) for c in parse_components(document)}

    assert found == {
        ("PyPI", "requests", "2.19.0"),
        ("npm", "left-pad", "1.3.0"),
        ("PyPI", "jinja2", "2.8"),
    }
    with pytest.raises(ValueError, match="not a CycloneDX"):
        parse_components(b'{"bomFormat": "SPDX"}')


def test_an_advisory_matches_every_affected_version_and_only_those(tmp_path: Path):
    store = LocalStore(tmp_path)
    stored(store, "old", "a" * 40, "requests==2.19.0", "urllib3==1.26.5")
    stored(store, "new", "b" * 40, "requests==2.31.0", "urllib3==2.0.7")
    stored(store, "mid", "c" * 40, "requests==2.25.0")
    versions = service_versions(
        store, ["old", "new", "mid", "never-scanned"], {("mid", "prod"): "d" * 40}
    )
    assert {(v.service, v.sha[:1], v.where) for v in versions} == {
        ("old", "a", (DEFAULT_BRANCH,)),
        ("new", "b", (DEFAULT_BRANCH,)),
        ("mid", "c", (DEFAULT_BRANCH,)),
        ("mid", "d", ("prod",)),  # deployed, but its commit was never scanned
    }

    sboms, unscanned = read_sboms(store, versions)
    found = {(i.service, i.advisory, i.package, i.installed) for i in match(records(), sboms)}

    assert found == {
        ("old", "PYSEC-2018-28", "requests", "2.19.0"),
        ("old", "PYSEC-2023-74", "requests", "2.19.0"),
        ("old", "PYSEC-2023-192", "urllib3", "1.26.5"),
        ("mid", "PYSEC-2023-74", "requests", "2.25.0"),
    }
    assert [(v.service, v.where) for v in unscanned] == [("mid", ("prod",))]


def test_withdrawn_advisories_and_a_second_id_of_one_advisory_match_nothing_more():
    sbom = parse_components(bom("requests==2.19.0").encode())
    version = ServiceVersion("svc", "a" * 40, (DEFAULT_BRANCH,))
    from tasks.scanners.impact import StoredSbom

    base = next(r for r in records() if r["id"] == "PYSEC-2018-28")
    ghsa = {**base, "id": "GHSA-x84v-xcm2-53pg", "aliases": ["CVE-2018-18074"]}
    withdrawn = {**base, "id": "PYSEC-2099-1", "aliases": [], "withdrawn": "2024-01-01T00:00:00Z"}

    impacts = match([base, ghsa, withdrawn], [StoredSbom(version, sbom)])

    assert [i.advisory for i in impacts] == ["GHSA-x84v-xcm2-53pg"]  # sorted first; same CVE


def test_a_matched_finding_is_the_finding_pip_audit_reports(
    tmp_path: Path, insecure: Path, osv_socket: Any
):
    """Same tool, message and fingerprint: a later rescan sees the same finding, not a new one."""
    cache = tmp_path / "cache"
    cache.mkdir()
    scanner = DependencyScanner(osv_socket.query_url, cache_dir=cache)
    scanner.reach = Reach(writable=(cache,), forwards=(osv_socket.forward,))
    audited = scanner.scan(insecure, timeout=120)
    generated = SbomGenerator().generate(insecure, timeout=120)
    assert generated.document is not None, generated.error
    from tasks.scanners.impact import StoredSbom

    version = ServiceVersion("svc", "a" * 40, (DEFAULT_BRANCH,))
    sbom = StoredSbom(version, parse_components(generated.document))
    matched = {i.finding() for i in match(records(), [sbom])}

    assert {(f.fingerprint, f.fix_version) for f in matched} == {
        (f.fingerprint, f.fix_version) for f in audited.findings
    }
    assert {f.message for f in matched} == {f.message for f in audited.findings}


def test_recording_adds_only_what_the_scan_lacks_and_applies_its_accepted_risks(tmp_path: Path):
    from tasks.scanners.accepted import AcceptedRisk, AcceptedRisks

    store = LocalStore(tmp_path)
    accepted = AcceptedRisks(
        accepted_risks=(
            AcceptedRisk(id="CVE-2023-32681", reason="no proxies here", expires=date(2099, 1, 1)),
        )
    )
    scan = summary(result("pip-audit", PYSEC), accepted=accepted).model_copy(
        update={"service": "svc"}
    )
    save_scan(store, scan, sarif={}, sbom=bom("requests==2.19.0").encode(), on_default_branch=True)
    sboms, _ = read_sboms(store, service_versions(store, ["svc"], {}))
    impacts = match(records(), sboms)

    added = record_impacts(store, impacts, repositories={}, today=date(2026, 6, 2))

    assert [(v.service, f.rule_id, f.state) for v, f in added] == [
        ("svc", "PYSEC-2023-74", "new")  # PYSEC-2018-28 was found by the scan already
    ]
    assert added[0][1].accepted_reason == "no proxies here"
    after = load_summary(store, "svc", scan.sha)
    assert after is not None
    assert {f.rule_id for f in after.findings} == {"PYSEC-2018-28", "PYSEC-2023-74"}
    assert after.matched_advisories == ("PYSEC-2023-74",)
    assert next(t for t in after.tools if t.tool == "pip-audit").findings == 2
    sarif = json.loads(store.get(f"svc/{scan.sha}/scan.sarif"))
    assert "PYSEC-2023-74" in {r["ruleId"] for run in sarif["runs"] for r in run["results"]}
    assert record_impacts(store, impacts, repositories={}, today=date(2026, 6, 2)) == []


def test_an_advisory_is_rated_by_its_own_severity_word_else_its_cvss_vector():
    ghsa = {"id": "GHSA-1", "database_specific": {"severity": "MODERATE"}}
    cvss3 = {
        "id": "PYSEC-1",
        "severity": [
            {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
            {"type": "CVSS_V3", "score": "not a vector"},
        ],
    }

    assert advisory_severity(ghsa) is Severity.MEDIUM
    assert advisory_severity(cvss3) is Severity.CRITICAL
    assert advisory_severity({"id": "PYSEC-2"}) is Severity.UNKNOWN
    rated = rate_findings((ScanResult("pip-audit", result("x").status, (PYSEC,)),), {}.get)
    assert rated[0].findings[0].severity is Severity.UNKNOWN  # no record: left as it was
    rated = rate_findings((result("pip-audit", PYSEC),), {"PYSEC-2018-28": cvss3}.get)
    assert rated[0].findings[0].severity is Severity.CRITICAL


def test_only_new_and_changed_advisories_count_after_a_sync(tmp_path: Path):
    old, new = tmp_path / "old.zip", tmp_path / "new.zip"
    everything = records()
    with zipfile.ZipFile(old, "w") as z:
        for r in everything[:3]:
            z.writestr(f"{r['id']}.json", json.dumps(r))
    with zipfile.ZipFile(new, "w") as z:
        for r in everything[:2]:
            z.writestr(f"{r['id']}.json", json.dumps(r))
        changed = {**everything[2], "modified": "2030-01-01T00:00:00Z"}
        z.writestr(f"{changed['id']}.json", json.dumps(changed))
        z.writestr(f"{everything[3]['id']}.json", json.dumps(everything[3]))

    found = changed_advisories(new, archive_digests(old))

    assert sorted(r["id"] for r in found) == sorted([everything[2]["id"], everything[3]["id"]])
    assert len(changed_advisories(new, archive_digests(tmp_path / "missing.zip"))) == 4
    assert len(OsvMirror.load(new)) == 4
