"""A platform with history for the portal's tests: teams, services, releases, a scan, docs, drift.

Everything is written where the platform writes it, with its own functions:
the catalog repository, release records as Prefect artifacts, a scan in the
artifact store, a MkDocs-built site in TechDocs' layout, a drift report, and
a service that answers ``/healthz`` on loopback. Texts are hostile on
purpose: every page must show them as text.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prefect.artifacts import create_table_artifact

from blocks import GitServer
from slipway.process import run
from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.entities import GroupEntity, SystemEntity
from tasks.catalog.model import CatalogModel
from tasks.release import DeploymentRecord, record_deployment
from tasks.scanners.base import ScanStatus, Severity
from tasks.scanners.history import save_scan
from tasks.scanners.report import FindingRecord, ScanSummary, ToolRecord
from tasks.storage import ObjectStore
from tasks.techdocs import DocsMetadata, PublishInfo, site_prefix, sync_site
from tests.conftest import free_port

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
"""Text that would run script if any page put it in the HTML unescaped."""
MARK = "<script>document.title='pwned'</script>"
SCAN_SHA = "c" * 40
DEV_SHA = "a" * 40
PROD_SHA = "b" * 40
DOCS_SCRIPT = """
<div id="verdict">waiting</div>
<script>
(function () {
  var seen = [window.origin === "null" ? "opaque-origin" : "origin:" + window.origin];
  try { document.cookie = "stolen=1"; seen.push("cookie:" + document.cookie); }
  catch (e) { seen.push("cookie-blocked"); }
  try { localStorage.setItem("stolen", "1"); seen.push("storage-open"); }
  catch (e) { seen.push("storage-blocked"); }
  fetch("/services/wallet-api").then(function (r) { return r.text(); })
    .then(function (t) { seen.push("read-portal:" + t.length); })
    .catch(function () { seen.push("portal-unreadable"); })
    .then(function () { document.getElementById("verdict").textContent = seen.join(" "); });
})();
</script>
"""


@dataclass(frozen=True)
class World:
    """What the tests look for."""

    services: tuple[str, ...]
    healthy_port: int


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def record(service: str, environment: str, sha: str, at: datetime, **fields: str) -> None:
    """One release record, written as delivery writes it (artifact and event)."""
    values: dict[str, object] = {
        "service": service,
        "environment": environment,
        "sha": sha,
        "image": f"127.0.0.1:5001/{service}@{digest(int(sha[:8], 16))}",
        "action": "build-test-deploy",
        "outcome": "succeeded",
        "at": at,
        "triggered_by": "alice",
        **fields,
    }
    record_deployment.fn(DeploymentRecord.model_validate(values))


def findings(service: str, counts: dict[Severity, int]) -> tuple[FindingRecord, ...]:
    found = []
    for severity, count in counts.items():
        for i in range(count):
            found.append(
                FindingRecord(
                    tool="bandit",
                    rule_id=f"B{severity.rank}{i:03d}",
                    severity=severity,
                    file=f"app/{HOSTILE if i == 0 else 'server'}.py",
                    line=i + 1,
                    message=f"{HOSTILE} finding {i}",
                    help_uri="javascript:document.title='pwned'",
                    fingerprint=f"{service}-{severity.value}-{i}",
                    state="new",
                )
            )
    return tuple(found)


def store_scan(store: ObjectStore, service: str, counts: dict[Severity, int]) -> None:
    """A default-branch scan of ``service`` with ``counts`` open findings, as the scan flow stores it."""
    tool = ToolRecord(tool="bandit", status=ScanStatus.FINDINGS, findings=sum(counts.values()))
    summary = ScanSummary(
        service=service,
        sha=SCAN_SHA,
        ref="refs/heads/main",
        default_branch=True,
        scanned_at=datetime.now(UTC),
        baseline_sha=None,
        tools=(tool,),
        sbom=ToolRecord(tool="cyclonedx", status=ScanStatus.CLEAN),
        findings=findings(service, counts),
    )
    sarif = {"version": "2.1.0", "runs": []}
    save_scan(store, summary, sarif=sarif, sbom=None, on_default_branch=True)


def publish_docs_with_script(store: ObjectStore, service: str, work: Path) -> None:
    """A real MkDocs Material site whose page carries a <script>, in TechDocs' layout."""
    (work / "docs").mkdir(parents=True)
    (work / "mkdocs.yml").write_text(
        f"site_name: {service}\ntheme:\n  name: material\n  font: false\nnav:\n  - Home: index.md\n"
    )
    (work / "docs" / "index.md").write_text(f"# {service}\n\nHow to use it.\n\n{DOCS_SCRIPT}\n")
    run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "site"], cwd=work)
    now = datetime.now(UTC)
    info = PublishInfo(
        service=service,
        commit=SCAN_SHA,
        ref="main",
        version=SCAN_SHA,
        commit_timestamp=int(now.timestamp() * 1000),
        build_key="test",
    )
    files = tuple(
        sorted(str(p.relative_to(work / "site")) for p in (work / "site").rglob("*") if p.is_file())
    )
    metadata = DocsMetadata(
        site_name=service,
        build_timestamp=int(now.timestamp() * 1000),
        files=files,
        etag=SCAN_SHA,
        slipway=info,
    )
    sync_site(store, work / "site", site_prefix(service), metadata)


@contextmanager
def healthy_service(version: str) -> Iterator[int]:
    """A stand-in for a running service: ``/healthz`` answers 200 with its version."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "version": version}).encode()
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def build_world(server: GitServer, store: ObjectStore, work: Path, healthy_port: int) -> World:
    """The catalog, history, scan, docs and drift report every portal test reads."""
    catalog = Catalog(server)
    model = CatalogModel(catalog)
    model.save(
        GroupEntity(
            name="payments",
            title=f"Payments {HOSTILE}",
            description=f"Takes money. {HOSTILE}",
            members=("alice", "bob"),
            approvers=("alice",),
        ),
        message="team",
    )
    model.save(SystemEntity(name="shop", owner="group:payments", description=HOSTILE), message="s")
    dead_port = free_port()
    preview_expiry = (datetime.now(UTC) + timedelta(hours=30)).isoformat(timespec="seconds")
    entries = [
        CatalogEntry(
            name="wallet-api",
            owner="group:payments",
            description=f"Moves money. {HOSTILE}",
            lifecycle="production",
            repository=str(server.root / "wallet-api.git"),
            port=free_port(),
            environments=("dev", "prod"),
            system="shop",
            outputs={
                "dev": {"port": str(healthy_port), "container_name": "wallet-api-dev"},
                "prod": {"port": str(dead_port), "container_name": "wallet-api-prod"},
                "preview-fix-login": {"port": str(free_port()), "expires_at": preview_expiry},
            },
        ),
        CatalogEntry(
            name="invoicing",
            owner="group:payments",
            description="Sends invoices.",
            repository=str(server.root / "invoicing.git"),
            port=free_port(),
        ),
        CatalogEntry(
            name="ghost",
            owner="group:ghosts",
            description="Owned by a team the catalog lacks.",
            repository=str(server.root / "ghost.git"),
            port=free_port(),
        ),
    ]
    for entry in entries:
        catalog.save(entry, message=f"onboard {entry.name}")
    now = datetime.now(UTC)
    committed = (now - timedelta(days=3)).isoformat()
    record("wallet-api", "dev", DEV_SHA, now - timedelta(days=2), committed_at=committed)
    record(
        "wallet-api",
        "prod",
        PROD_SHA,
        now - timedelta(days=2, hours=-1),
        action="promote",
        triggered_by=HOSTILE,
        from_environment="dev",
    )
    record(
        "wallet-api",
        "prod",
        "d" * 40,
        now - timedelta(days=1),
        action="promote",
        outcome="failed",
        detail=f"did not answer /healthz {HOSTILE}",
    )
    for i in range(101):  # a page of history and one more
        record("invoicing", "dev", f"{i:040x}", now - timedelta(hours=200 - i))
    store_scan(store, "wallet-api", {Severity.CRITICAL: 1, Severity.HIGH: 2, Severity.MEDIUM: 3})
    publish_docs_with_script(store, "wallet-api", work / "docs-site")
    create_table_artifact(
        key="drift-report",
        table=[
            {
                "service": "wallet-api",
                "environment": "prod",
                "status": "OutOfSync",
                "reasons": f"container stopped {HOSTILE}",
                "reconcile": "-",
            },
            {
                "service": "wallet-api",
                "environment": "dev",
                "status": "InSync",
                "reasons": "-",
                "reconcile": "-",
            },
        ],
    )
    return World(services=("ghost", "invoicing", "wallet-api"), healthy_port=healthy_port)
