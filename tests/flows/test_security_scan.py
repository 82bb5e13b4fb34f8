"""security-scan, nightly-security-scan, the gate and sync-vulnerability-db, end to end.

Each test runs the real flows on the session's Prefect server against a fresh
platform (its own git server, artifact store and OSV mirror directory), with
the real scanners on real repositories. No vulnerability API is reachable:
the mirror is an ``all.zip`` of the fixture advisories in ``tests/fixtures/osv``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from jsonschema import Draft4Validator
from moto.server import ThreadedMotoServer

from blocks import ArtifactStore, GitServer, PlatformSettings, VulnerabilitySource
from blocks.s3 import S3Connection
from flows.security_scan import FINDING_EVENT, nightly_security_scan, security_scan
from flows.vulnerability_db import sync_vulnerability_db
from slipway.errors import GateRefused, InvalidRequest, ScanError, ServiceNotFound
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import create_repository, publish_directory, repository_url
from tasks.scanners.exploited import KNOWN_EXPLOITED_FILE
from tasks.scanners.gate import enforce_gate
from tasks.scanners.history import load_summary
from tasks.scanners.report import ScanSummary
from tasks.scanners.sarif import sarif_schema
from tasks.storage import open_store
from testkit.delivery import osv_archive
from tests.conftest import Platform

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INSECURE = FIXTURES / "insecure-service"
OSV_RECORDS = FIXTURES / "osv"
KEV_CATALOG = FIXTURES / "known-exploited" / "catalog.json"

pytestmark = pytest.mark.timeout(600)

EXPECTED_FIRST = {
    "bandit": {"B404", "B602", "B105"},
    "pip-audit": {"PYSEC-2018-28", "PYSEC-2023-74", "PYSEC-2023-192"},
    "detect-secrets": {"AWSKeyDetector", "KeywordDetector"},
    "checkov": {
        "CKV_AWS_20",
        "CKV2_AWS_6",
        "CKV2_AWS_61",
        "CKV2_AWS_62",
        "CKV_AWS_18",
        "CKV_AWS_21",
        "CKV_AWS_144",
        "CKV_AWS_145",
    },
}


@pytest.fixture
def scan_platform(platform: Platform, tmp_path: Path) -> Platform:
    """The platform with a synced OSV mirror and known-exploited catalog in its mirror directory."""
    mirror = tmp_path / "osv-mirror"
    mirror.mkdir()
    osv_archive(mirror / "all.zip")
    shutil.copy(KEV_CATALOG, mirror / KNOWN_EXPLOITED_FILE)
    VulnerabilitySource(kind="mirror", mirror_path=mirror, known_exploited_url=None).save(
        "default", overwrite=True
    )
    return platform


def add_service(name: str, source: Path, port: int) -> str:
    """A repository holding ``source`` and its catalog entry; returns the commit."""
    server = GitServer.load_default()
    create_repository(server, name)
    sha = publish_directory(server, name, source, message=f"{name}: first commit")
    entry = CatalogEntry(
        name=name, owner="group:security", repository=repository_url(server, name), port=port
    )
    Catalog(server).save(entry, message=f"add {name}")
    return sha


def second_commit(tmp_path: Path) -> Path:
    """The insecure service with B602 fixed, eval added, urllib3 upgraded and risks accepted."""
    tree = Path(shutil.copytree(INSECURE, tmp_path / "second"))
    (tree / "app" / "ops.py").write_text(
        '"""Deliberately insecure code for the security scan tests."""\n\n'
        "import subprocess\n\n\n"
        "def evaluate(expression):\n"
        "    return eval(expression)\n\n\n"
        "def connect():\n"
        '    password = "hunter2"\n'
        "    return password\n"
    )
    (tree / "requirements.txt").write_text("requests==2.19.0\nurllib3==1.26.17\n")
    accepted = {
        "accepted_risks": [
            {
                "id": "CVE-2023-32681",
                "reason": "Proxy-Authorization is never used here.",
                "expires": "2099-12-31",
            },
            {"id": "CKV_AWS_18", "reason": "Logging bucket comes later.", "expires": "2020-01-01"},
        ]
    }
    (tree / "accepted-risks.yaml").write_text(yaml.safe_dump(accepted))
    return tree


def rule_ids(summary: ScanSummary, state: str | None = None) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    records = summary.fixed if state == "fixed" else summary.findings
    for f in records:
        if state in (None, "fixed") or f.state == state:
            found.setdefault(f.tool, set()).add(f.rule_id)
    return found


def artifact(key: str) -> Any:
    """The newest artifact's data under ``key``."""
    from prefect.client.orchestration import get_client

    # The 3.8 client sends null run filters, which this server refuses (GUIDE.md), and
    # empty ones join on task runs; ask the API directly.
    body = {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"}
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/artifacts/filter", json=body).json()
    assert found, f"no artifact {key}"
    return found[0]["data"]


def test_two_commits_mark_findings_new_fixed_and_unchanged_and_store_every_report(
    scan_platform: Platform, tmp_path: Path
):
    first_sha = add_service("insecure", INSECURE, 8301)

    first = security_scan("insecure")

    assert first.sha == first_sha and first.default_branch and first.baseline_sha is None
    assert {t.tool: t.status.value for t in first.tools} == {
        "bandit": "findings",
        "pip-audit": "findings",
        "detect-secrets": "findings",
        "checkov": "findings",
    }
    assert rule_ids(first) == EXPECTED_FIRST
    assert rule_ids(first, "new") == EXPECTED_FIRST
    assert first.sbom.status.value == "clean"

    store = open_store(ArtifactStore.load_default())
    keys = {o.key for o in store.list(f"insecure/{first_sha}/")}
    assert keys == {
        f"insecure/{first_sha}/{n}" for n in ("scan.sarif", "sbom.cdx.json", "summary.json")
    }
    sarif = json.loads(store.get(f"insecure/{first_sha}/scan.sarif"))
    assert not list(Draft4Validator(sarif_schema()).iter_errors(sarif))
    assert sarif["version"] == "2.1.0"
    assert [run["tool"]["driver"]["name"] for run in sarif["runs"]] == [
        "bandit",
        "pip-audit",
        "detect-secrets",
        "checkov",
    ]
    sbom = json.loads(store.get(f"insecure/{first_sha}/sbom.cdx.json"))
    assert {c["purl"] for c in sbom["components"]} == {
        "pkg:pypi/requests@2.19.0",
        "pkg:pypi/urllib3@1.26.5",
    }
    assert load_summary(store, "insecure", first_sha) == first

    markdown = artifact("security-scan-insecure")
    assert "| critical | high | medium | low | unknown |" in markdown
    assert "B602" in markdown and "## New findings (" in markdown
    table = artifact("security-findings-insecure")
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["rule"] for r in rows} == set().union(*EXPECTED_FIRST.values())
    assert "hunter2" not in markdown and "AKIAIOSFODNN7EXAMPLE" not in json.dumps(rows)

    second_sha = publish_directory(
        GitServer.load_default(), "insecure", second_commit(tmp_path), message="fix some, break one"
    )
    second = security_scan("insecure", commit=second_sha)

    assert second.baseline_sha == first_sha
    assert rule_ids(second, "new") == {"bandit": {"B307"}}
    assert rule_ids(second, "fixed") == {"bandit": {"B602"}, "pip-audit": {"PYSEC-2023-192"}}
    unchanged = rule_ids(second, "unchanged")
    assert unchanged["bandit"] == {"B404", "B105"}
    assert unchanged["pip-audit"] == {"PYSEC-2018-28", "PYSEC-2023-74"}
    assert unchanged["checkov"] == EXPECTED_FIRST["checkov"]
    accepted = {f.rule_id: f.accepted_reason for f in second.findings if f.accepted_reason}
    assert accepted == {"PYSEC-2023-74": "Proxy-Authorization is never used here."}
    assert second.expired_acceptances == ("CKV_AWS_18",)

    sarif = json.loads(store.get(f"insecure/{second_sha}/scan.sarif"))
    assert not list(Draft4Validator(sarif_schema()).iter_errors(sarif))
    states = {(r["ruleId"], r["baselineState"]) for run in sarif["runs"] for r in run["results"]}
    assert {
        ("B307", "new"),
        ("B602", "absent"),
        ("PYSEC-2023-192", "absent"),
        ("B404", "unchanged"),
    } <= states
    suppressed = [
        r["ruleId"] for run in sarif["runs"] for r in run["results"] if r.get("suppressions")
    ]
    assert suppressed == ["PYSEC-2023-74"]

    # The gate: the first commit brings new HIGH findings and a known-exploited
    # advisory; the second only a new MEDIUM one.
    with pytest.raises(GateRefused) as refused:
        enforce_gate("insecure", first_sha)
    message = str(refused.value)
    for named in (
        "B602 at app/ops.py:8",
        "CKV_AWS_20 at infra/main.tf:2",
        "AWSKeyDetector at config/deploy.env:2",
        "PYSEC-2018-28",
    ):
        assert named in message
    with pytest.raises(GateRefused, match="known-exploited advisories: unknown PYSEC-2018-28"):
        enforce_gate("insecure", second_sha)
    PlatformSettings(gate_block_known_exploited=False).save("default", overwrite=True)
    enforce_gate("insecure", second_sha)
    with pytest.raises(GateRefused, match="never scanned"):
        enforce_gate("insecure", "0" * 40)


def test_an_errored_tool_fails_the_scan_is_stored_and_the_gate_refuses_it(
    scan_platform: Platform, tmp_path: Path
):
    broken = tmp_path / "broken"
    (broken / "app").mkdir(parents=True)
    (broken / "app" / "main.py").write_text("def handler(:\n")
    sha = add_service("broken", broken, 8302)

    with pytest.raises(ScanError, match="errored, so it is not clean") as failed:
        security_scan("broken")

    for tool in ("bandit", "pip-audit", "checkov", "cyclonedx-py"):
        assert tool in str(failed.value)
    summary = load_summary(open_store(ArtifactStore.load_default()), "broken", sha)
    assert summary is not None and summary.status == "errored"
    statuses = {t.tool: t.status.value for t in summary.tools}
    assert statuses == {
        "bandit": "errored",
        "pip-audit": "errored",
        "detect-secrets": "clean",
        "checkov": "errored",
    }
    assert "syntax error" in (summary.tools[0].error or "")
    assert "requirements.txt does not exist" in (summary.tools[1].error or "")
    PlatformSettings(gate_block_known_exploited=False).save("default", overwrite=True)
    with pytest.raises(GateRefused, match=r"scanners errored.*bandit"):
        enforce_gate("broken", sha)


def test_an_unsynced_mirror_errors_the_dependency_scan_with_the_fix(
    platform: Platform, tmp_path: Path
):
    VulnerabilitySource(kind="mirror", mirror_path=tmp_path / "empty-mirror").save(
        "default", overwrite=True
    )
    service = tmp_path / "pinned"
    (service / "app").mkdir(parents=True)
    (service / "app" / "main.py").write_text("x = 1\n")
    (service / "requirements.txt").write_text("requests==2.31.0\n")
    add_service("unsynced", service, 8303)

    with pytest.raises(ScanError, match="pip-audit: the OSV mirror has not been synced") as failed:
        security_scan("unsynced")

    assert "run the sync-vulnerability-db deployment" in str(failed.value)


def test_an_unknown_service_is_refused_before_any_scan(platform: Platform):
    with pytest.raises(ServiceNotFound, match="no service 'ghost'"):
        security_scan("ghost")


def read_events(name: str, service: str, expected: int, timeout: float = 30) -> list[Any]:
    """The events ``name`` about ``service`` (other tests' services have theirs), once there are enough."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    about = EventResourceFilter(id=[f"slipway.service.{service}"])
    deadline, events = time.monotonic() + timeout, []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(name=[name]), resource=about), limit=50
            )
            events = page.events
            if len(events) >= expected:
                return events
            time.sleep(0.5)
    return events


def test_nightly_scan_ranks_every_service_alerts_new_high_findings_and_reports_failures(
    scan_platform: Platform, tmp_path: Path
):
    broken = tmp_path / "broken"
    (broken / "app").mkdir(parents=True)
    (broken / "app" / "main.py").write_text("x = 1\n")
    add_service("nightly-insecure", INSECURE, 8304)
    add_service("nightly-broken", broken, 8305)

    with pytest.raises(ScanError, match="1 of 2 services were not scanned cleanly: nightly-broken"):
        nightly_security_scan(max_parallel=2)

    ranking = artifact("security-ranking")
    rows = json.loads(ranking) if isinstance(ranking, str) else ranking
    assert [r["service"] for r in rows] == ["nightly-insecure", "nightly-broken"]
    assert rows[0]["open findings"] == 16 and rows[0]["high"] == 3
    assert rows[1]["status"] == "errored"
    events = read_events(FINDING_EVENT, "nightly-insecure", expected=3)
    alerted = {
        (e.payload["service"], e.payload["rule_id"])
        for e in events
        if e.payload["service"] == "nightly-insecure"
    }
    assert alerted == {
        ("nightly-insecure", "B602"),
        ("nightly-insecure", "CKV_AWS_20"),
        ("nightly-insecure", "AWSKeyDetector"),
    }


def test_the_nightly_scan_reruns_only_the_tools_whose_inputs_changed_and_says_so(
    scan_platform: Platform, tmp_path: Path
):
    add_service("steady", INSECURE, 8306)
    everything = ("bandit", "pip-audit", "detect-secrets", "checkov", "cyclonedx-py")

    def carried(scan: ScanSummary) -> dict[str, str | None]:
        return {t.tool: t.carried_from for t in (*scan.tools, scan.sbom)}

    (first,) = nightly_security_scan()
    assert carried(first) == dict.fromkeys(everything)
    assert all(t.input_key for t in (*first.tools, first.sbom))

    (second,) = nightly_security_scan()  # nothing changed: nothing runs
    assert second.sha == first.sha and carried(second) == dict.fromkeys(everything, first.sha)
    assert rule_ids(second) == EXPECTED_FIRST and second.status == "findings"
    assert f"carried over from `{first.sha[:12]}`" in artifact("security-scan-steady")

    tree = Path(shutil.copytree(INSECURE, tmp_path / "changed"))
    ops = tree / "app" / "ops.py"
    ops.write_text(ops.read_text() + "\n\ndef run(x):\n    return eval(x)\n")
    sha = publish_directory(GitServer.load_default(), "steady", tree, message="add eval")
    (third,) = nightly_security_scan()
    assert third.sha == sha
    assert carried(third) == {
        "bandit": None,
        "pip-audit": first.sha,
        "detect-secrets": None,
        "checkov": first.sha,
        "cyclonedx-py": first.sha,
    }
    assert {(f.rule_id, f.state) for f in third.findings if f.tool == "bandit"} >= {("B307", "new")}
    assert rule_ids(third)["checkov"] == EXPECTED_FIRST["checkov"]

    # New advisory data: pip-audit runs again (here, with one advisory withdrawn).
    mirror = VulnerabilitySource.load_default().archive_path
    assert mirror is not None
    with zipfile.ZipFile(mirror, "w") as archive:
        for record in sorted(OSV_RECORDS.glob("*.json")):
            if record.stem != "PYSEC-2018-28":
                archive.write(record, record.name)
    (fourth,) = nightly_security_scan()
    assert carried(fourth)["pip-audit"] is None and carried(fourth)["bandit"] == sha
    assert "PYSEC-2018-28" not in rule_ids(fourth)["pip-audit"]

    (full,) = nightly_security_scan(full=True)
    assert carried(full) == dict.fromkeys(everything)


def test_a_new_high_finding_alerts_once_per_commit(monkeypatch: pytest.MonkeyPatch):
    import tasks.scanners.scan as module
    from tests.tasks.scanners.helpers import B404, B602, CKV, result, summary

    sent: list[str] = []
    monkeypatch.setattr(
        module, "emit_finding", lambda service, sha, finding: sent.append(finding.rule_id)
    )
    scan = summary(result("bandit", B602, B404), result("checkov", CKV), baseline=[CKV])

    alert = module.alert_new_findings.fn
    alert(scan, seen=frozenset())  # B404 is LOW, CKV_AWS_20 is unchanged
    alert(scan, seen=frozenset({B602.fingerprint}))  # last night's scan had it

    assert sent == ["B602"]


def test_nightly_scan_refuses_a_parallelism_below_one(platform: Platform):
    with pytest.raises(InvalidRequest, match="at least 1"):
        nightly_security_scan(max_parallel=-1)


# -- sync-vulnerability-db -----------------------------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback, as an internal mirror of OSV's bucket would be."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_sync_installs_osv_data_and_the_catalog_from_http_and_keeps_them_on_a_bad_download(
    platform: Platform, tmp_path: Path, http_root: tuple[Path, str]
):
    root, url = http_root
    osv_archive(root / "all.zip")
    shutil.copy(KEV_CATALOG, root / "kev.json")
    (root / "not-a-zip.zip").write_text("<html>proxy error</html>")
    mirror = tmp_path / "mirror"
    VulnerabilitySource(
        kind="mirror",
        mirror_path=mirror,
        sync_url=f"{url}/all.zip",
        known_exploited_url=f"{url}/kev.json",
    ).save("default", overwrite=True)

    report = sync_vulnerability_db()

    assert (report.advisories, report.known_exploited) == (4, 2)
    assert zipfile.ZipFile(mirror / "all.zip").namelist()
    with pytest.raises(InvalidRequest, match="neither a directory nor a zip"):
        sync_vulnerability_db(source=f"{url}/not-a-zip.zip", known_exploited=False)
    with pytest.raises(InvalidRequest, match="could not fetch"):
        sync_vulnerability_db(source=f"{url}/missing.zip", known_exploited=False)
    assert len(zipfile.ZipFile(mirror / "all.zip").namelist()) == 4
    assert sorted(p.name for p in mirror.iterdir()) == ["all.zip", KNOWN_EXPLOITED_FILE]


def test_a_synced_advisory_lands_on_affected_scans_from_their_sboms_without_a_rescan(
    scan_platform: Platform,
    tmp_path: Path,
    http_root: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_server: str,
):
    root, url = http_root
    mirror = VulnerabilitySource.load_default().mirror_path
    assert mirror is not None
    with zipfile.ZipFile(mirror / "all.zip", "w") as old:  # the data before: no PYSEC-2023-74
        for record in sorted(OSV_RECORDS.glob("*.json")):
            if record.stem != "PYSEC-2023-74":
                old.write(record, record.name)
    sha = add_service("impacted", INSECURE, 8306)
    fixed = tmp_path / "fixed"
    shutil.copytree(INSECURE, fixed)
    (fixed / "requirements.txt").write_text("requests==2.31.0\nurllib3==1.26.17\n")
    add_service("unaffected", fixed, 8307)
    security_scan("impacted")
    security_scan("unaffected")
    store = open_store(ArtifactStore.load_default())
    before = load_summary(store, "impacted", sha)
    assert before is not None and "PYSEC-2023-74" not in rule_ids(before)["pip-audit"]
    new = json.loads((OSV_RECORDS / "PYSEC-2023-74.json").read_text())
    new["database_specific"] = {"severity": "HIGH"}  # as GitHub's records rate it
    with zipfile.ZipFile(root / "all.zip", "w") as newer:
        for record in sorted(OSV_RECORDS.glob("*.json")):
            if record.stem != "PYSEC-2023-74":
                newer.write(record, record.name)
        newer.writestr("PYSEC-2023-74.json", json.dumps(new))

    report = sync_vulnerability_db(source=f"{url}/all.zip", known_exploited=False)

    assert report.changed == 1 and report.impact is not None
    assert report.impact.sboms == 2 and not report.impact.unscanned
    assert [
        (v.service, v.sha, f.rule_id)
        for v, f in zip(report.impact.added_to, report.impact.added, strict=True)
    ] == [("impacted", sha, "PYSEC-2023-74")]
    after = load_summary(store, "impacted", sha)
    assert after is not None and after.matched_advisories == ("PYSEC-2023-74",)
    added = next(f for f in after.findings if f.rule_id == "PYSEC-2023-74")
    assert (added.state, added.severity.value) == ("new", "high")
    sarif = json.loads(store.get(f"impacted/{sha}/scan.sarif"))
    assert not list(Draft4Validator(sarif_schema()).iter_errors(sarif))
    with pytest.raises(GateRefused, match="PYSEC-2023-74"):
        enforce_gate("impacted", sha)
    (event,) = [
        e
        for e in read_events(FINDING_EVENT, "impacted", expected=1)
        if e.payload.get("source") == "advisory-sync" and e.payload["service"] == "impacted"
    ]
    assert event.payload["rule_id"] == "PYSEC-2023-74"
    assert event.resource["slipway.security.severity"] == "high"
    rows = artifact("advisory-impact")
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [(r["service"], r["finding"]) for r in rows] == [("impacted", "new")]

    rescan = security_scan("impacted")  # the same finding, not another one
    again = next(f for f in rescan.findings if f.rule_id == "PYSEC-2023-74")
    assert (again.fingerprint, again.severity) == (added.fingerprint, added.severity)

    from deployments.cli import main
    from deployments.state import UpLock, UpState, write_state

    home = scan_platform.home
    lock = UpLock(home)
    lock.acquire()
    try:
        write_state(
            home,
            UpState(
                supervisor_pid=1,
                marker="test",
                started_at=datetime.now(UTC),
                ports=scan_platform.ports.as_dict(),
                project_dir=str(tmp_path),
                api_url=prefect_server,
            ),
        )
        monkeypatch.setenv("PREFECT_API_URL", prefect_server)  # restored after the CLI's change
        assert main(["--home", str(home.root), "vuln", "affected", "CVE-2023-32681"]) == 0
    finally:
        lock.release()
    printed = capsys.readouterr().out
    assert "PYSEC-2023-74 (CVE-2023-32681): 1 of 2 services affected (impacted)" in printed
    assert "requests 2.19.0" in printed and "2.31.0" in printed


def test_sync_reads_osv_data_from_an_s3_object(platform: Platform, tmp_path: Path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        connection = S3Connection(
            endpoint_url=f"http://{host}:{port}",
            access_key_id="AKIASLIPWAYTEST",
            secret_access_key="osv-sync-secret-9Kd2",
            path_style=True,
        )
        client = boto3.client("s3", **connection.client_kwargs())
        client.create_bucket(Bucket="vuln-data")
        client.put_object(
            Bucket="vuln-data",
            Key="osv/PyPI/all.zip",
            Body=osv_archive(tmp_path / "all.zip").read_bytes(),
        )
        VulnerabilitySource(kind="mirror", mirror_path=tmp_path / "mirror", s3=connection).save(
            "default", overwrite=True
        )

        report = sync_vulnerability_db(
            source="s3://vuln-data/osv/PyPI/all.zip", known_exploited=False
        )

        assert report.advisories == 4 and report.known_exploited is None
    finally:
        server.stop()


def test_prefect_yaml_declares_the_security_deployments_with_push_parameters():
    from deployments.serve import declared_deployments

    declared = {d.name: d for d in declared_deployments(Path(__file__).resolve().parents[2])}
    scan = declared["security-scan"]
    assert scan.entrypoint == "flows/security_scan.py:security_scan"
    other_branch, due, fallback = [dict(t) for t in scan.config.triggers or []]
    from_push = {"service": "{{ event.payload.service }}", "commit": "{{ event.payload.after }}"}
    # Another branch's push is scanned at once; a default-branch push once its
    # build says so (tasks.scanners.due), or after a while if it never does.
    assert other_branch["expect"] == ["slipway.git.push"]
    assert other_branch["match"]["slipway.git.default-branch"] == "false"
    assert other_branch["parameters"] == from_push
    assert due["expect"] == ["slipway.security.scan-due"]
    assert due["parameters"]["commit"] == "{{ event.resource['slipway.git.commit'] }}"
    assert fallback["posture"] == "Proactive" and fallback["after"] == ["slipway.git.push"]
    assert fallback["match"]["slipway.git.default-branch"] == "true"
    assert fallback["parameters"] == from_push
    nightly = declared["nightly-security-scan"]
    assert [s.cron for s in nightly.config.schedules or []] == ["0 2 * * *"]
    assert (
        declared["sync-vulnerability-db"].entrypoint
        == "flows/vulnerability_db.py:sync_vulnerability_db"
    )
