from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from blocks.vulnerability_source import VulnerabilitySource
from tasks.osv_mirror import MirrorServer
from tasks.scanners import ScanResult, ScanStatus, Severity
from tasks.scanners.base import Reach
from tasks.scanners.dependencies import DependencyScanner
from tasks.scanners.vulnerability_data import osv_endpoint


def _scan(
    service: Path,
    osv: MirrorServer | str,
    cache: Path,
    *,
    requirements: str = "requirements.txt",
    ignore_vulns: tuple[str, ...] = (),
) -> ScanResult:
    """pip-audit in its sandbox, reaching the mirror's socket (or, given a URL, nothing)."""
    url = osv if isinstance(osv, str) else osv.query_url
    scanner = DependencyScanner(
        url, requirements=requirements, ignore_vulns=ignore_vulns, cache_dir=cache
    )
    forward = None if isinstance(osv, str) else osv.forward
    scanner.reach = Reach(writable=(cache,), forwards=(forward,) if forward else ())
    return scanner.scan(service, timeout=60)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "pip-audit-cache"
    path.mkdir()
    return path


def test_pip_audit_against_the_mirror_finds_the_real_advisories(
    service: Path, osv_socket: MirrorServer, cache: Path
):
    result = _scan(service, osv_socket, cache)

    assert result.status is ScanStatus.FINDINGS, result.error
    fixes = {f.rule_id: f.fix_version for f in result.findings}
    assert fixes == {
        "PYSEC-2018-28": "2.20.0",
        "PYSEC-2023-74": "2.31.0",
        "PYSEC-2023-192": "1.26.17",  # the nearest fix, not 2.0.6 of the other interval
    }
    urllib3 = next(f for f in result.findings if f.rule_id == "PYSEC-2023-192")
    assert urllib3.file == "requirements.txt" and urllib3.line is None
    assert urllib3.severity is Severity.UNKNOWN
    assert "urllib3 1.26.5" in urllib3.message and "CVE-2023-43804" in urllib3.message


def test_an_accepted_risk_is_dropped_and_the_rest_kept(
    service: Path, osv_socket: MirrorServer, cache: Path
):
    result = _scan(service, osv_socket, cache, ignore_vulns=("PYSEC-2023-74",))

    assert {f.rule_id for f in result.findings} == {"PYSEC-2018-28", "PYSEC-2023-192"}


def test_fixed_pins_are_clean(service: Path, osv_socket: MirrorServer, cache: Path):
    (service / "requirements.txt").write_text("requests==2.31.0\nurllib3==1.26.17\n")

    assert _scan(service, osv_socket, cache).status is ScanStatus.CLEAN


def test_osv_online_is_asked_by_the_platform_for_the_sandbox_and_finds_the_same(
    service: Path, osv_server: MirrorServer, cache: Path
):
    """kind=osv: the sandbox reaches the relay's socket; the platform asks "OSV" (here the
    mirror on loopback, standing in for api.osv.dev, which cannot be reached from here)."""
    with osv_endpoint(VulnerabilitySource(kind="osv", osv_url=osv_server.query_url)) as relay:
        result = _scan(service, relay, cache)

    assert {f.rule_id for f in result.findings} == {
        "PYSEC-2018-28",
        "PYSEC-2023-74",
        "PYSEC-2023-192",
    }, result.error


def test_the_sandbox_cannot_reach_a_mirror_on_the_hosts_loopback(
    service: Path, osv_server: MirrorServer, cache: Path
):
    result = _scan(service, osv_server.query_url, cache)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "Connection refused" in result.error


def test_a_missing_requirements_file_is_errored_naming_the_file(tmp_path: Path, cache: Path):
    result = _scan(tmp_path, "http://127.0.0.1:9/v1/query", cache, requirements="deps/prod.txt")

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and str(tmp_path / "deps" / "prod.txt") in result.error


def test_an_unreachable_mirror_errors_the_scan_instead_of_passing(service: Path, cache: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = _scan(service, f"http://127.0.0.1:{closed_port}/v1/query", cache)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "Connection refused" in result.error


def test_unpinned_requirements_are_errored_with_pip_audits_reason(
    service: Path, osv_socket: MirrorServer, cache: Path
):
    (service / "requirements.txt").write_text("requests>=2.0\n")

    result = _scan(service, osv_socket, cache)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "not pinned" in result.error


def test_aliases_are_sorted_so_the_fingerprint_is_stable_across_runs():
    from tasks.scanners.dependencies import parse_report

    def report(aliases: list[str]) -> str:
        vuln = {"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"], "aliases": aliases}
        return json.dumps(
            {"dependencies": [{"name": "requests", "version": "2.19.0", "vulns": [vuln]}]}
        )

    (one,) = parse_report(report(["GHSA-x84v-xcm2-53pg", "CVE-2018-18074"]), requirements="r.txt")
    (two,) = parse_report(report(["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]), requirements="r.txt")

    assert one.fingerprint == two.fingerprint
    assert one.aliases == ("CVE-2018-18074", "GHSA-x84v-xcm2-53pg")
