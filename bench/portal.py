"""How fast the portal renders the page of a service with a long history.

One service with 1,000 release records across three environments (real
Prefect artifacts) and a default-branch scan with 500 open findings, its
DORA report and scorecard evaluated by the real evaluate-service flow. The
portal runs as `slipway up` runs it (``python -m deployments.portal``) on a
temporary Prefect server. The baseline is a static HTML file with exactly
the bytes of that service page, served by the same portal from the
artifact store (the docs route), so the ratio is what rendering costs over
sending the same bytes.

Target: the service page's median and p95 under 300 ms.

    python bench/portal.py [--releases 1000] [--findings 500] [--requests 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from slipway.names import ServiceName
from testkit.platform import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_MS = 300.0
SERVICE = ServiceName("ledger")
ENVIRONMENTS = ("dev", "staging", "prod")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--findings", type=int, default=500)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Loopback only: the temporary server must not try to send telemetry.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from blocks import register_block_types

    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-portal-") as scratch,
        prefect_test_harness(server_startup_timeout=180),
    ):
        register_block_types()
        api = str(PREFECT_API_URL.value())
        return run(Path(scratch), api, args.releases, args.findings, args.requests)


def configure(scratch: Path) -> None:
    """The default blocks of a new home, and the service, its team and its history."""
    from blocks import ALL_BLOCKS, DEFAULT_DOCUMENT, S3Connection
    from slipway.home import Ports, SlipwayHome

    home = SlipwayHome(scratch / "home")
    home.ensure()
    os.environ["SLIPWAY_HOME"] = str(home.root)
    ports = Ports(prefect=free_port(), bridge=free_port(), docs=free_port(), registry=free_port())
    for block_type in ALL_BLOCKS:
        if block_type is not S3Connection:
            block_type.local_default(home, ports).save(DEFAULT_DOCUMENT, overwrite=True)


def history(releases: int) -> None:
    """``releases`` records over 90 days, as delivery writes them: a build to dev, then onwards."""
    from tasks.release import DeploymentRecord, record_deployment

    now = datetime.now(UTC)
    step = timedelta(days=90) / releases

    def write(i: int) -> None:
        at = now - timedelta(days=90) + step * i
        environment = ENVIRONMENTS[i % 3]
        record_deployment.fn(
            DeploymentRecord(
                service=SERVICE,
                environment=environment,
                sha=f"{i // 3:040x}",
                image=f"127.0.0.1:5001/{SERVICE}@sha256:{i // 3:064x}",
                action="build-test-deploy" if environment == "dev" else "promote",
                outcome="failed" if i % 17 == 0 else "succeeded",
                at=at,
                committed_at=(at - timedelta(hours=3)).isoformat(),
                triggered_by="bench",
                detail=f"release {i}",
            )
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(releases)))


def scan(findings: int) -> None:
    from blocks import ArtifactStore
    from tasks.scanners.base import ScanStatus, Severity
    from tasks.scanners.history import save_scan
    from tasks.scanners.report import FindingRecord, ScanSummary, ToolRecord
    from tasks.storage import open_store

    severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    summary = ScanSummary(
        service=SERVICE,
        sha="f" * 40,
        ref="refs/heads/main",
        default_branch=True,
        scanned_at=datetime.now(UTC),
        baseline_sha=None,
        tools=(ToolRecord(tool="bandit", status=ScanStatus.FINDINGS, findings=findings),),
        sbom=ToolRecord(tool="cyclonedx", status=ScanStatus.CLEAN),
        findings=tuple(
            FindingRecord(
                tool="bandit",
                rule_id=f"B{i % 700:03d}",
                severity=severities[i % 4],
                file=f"app/module_{i % 40}.py",
                line=i,
                message=f"Finding {i}: something a scanner does not like about this line.",
                fingerprint=f"fp-{i}",
                state="new",
            )
            for i in range(findings)
        ),
    )
    store = open_store(ArtifactStore.load_default())
    sarif = {"version": "2.1.0", "runs": []}
    save_scan(store, summary, sarif=sarif, sbom=None, on_default_branch=True)


def catalog() -> None:
    from blocks import GitServer
    from tasks.catalog import Catalog, CatalogEntry
    from tasks.catalog.entities import GroupEntity
    from tasks.catalog.model import CatalogModel

    server = GitServer.load_default()
    assert server.root is not None, "the bench's git server is a local one"
    CatalogModel(Catalog(server)).save(
        GroupEntity(name="finance", members=("ann", "ben"), approvers=("ann",)), message="team"
    )
    Catalog(server).save(
        CatalogEntry(
            name=SERVICE,
            owner="group:finance",
            description="Keeps the books.",
            repository=str(server.root / f"{SERVICE}.git"),
            port=free_port(),
            environments=ENVIRONMENTS,
        ),
        message="onboard",
    )


def timings(client: httpx.Client, url: str, count: int) -> list[float]:
    for _ in range(3):  # warm-up: connection, caches, imports
        client.get(url).raise_for_status()
    found = []
    for _ in range(count):
        began = time.perf_counter()
        client.get(url).raise_for_status()
        found.append((time.perf_counter() - began) * 1000)
    return found


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def run(scratch: Path, api: str, releases: int, findings: int, requests: int) -> int:
    configure(scratch)
    catalog()
    began = time.perf_counter()
    history(releases)
    print(f"wrote {releases} release records in {time.perf_counter() - began:.1f} s")
    scan(findings)
    from flows.insights import evaluate_service

    began = time.perf_counter()
    card = evaluate_service(SERVICE)
    print(
        f"evaluate-service over {releases} records: {time.perf_counter() - began:.2f} s, level {card.level}"
    )

    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO)}
    log = (scratch / "portal.log").open("w")
    portal = subprocess.Popen(
        [sys.executable, "-m", "deployments.portal", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=log,
    )
    try:
        return measure(f"http://127.0.0.1:{port}", requests)
    finally:
        portal.terminate()
        portal.wait(timeout=15)
        log.close()


def measure(base: str, requests: int) -> int:
    from blocks import ArtifactStore
    from tasks.storage import open_store
    from tasks.techdocs import site_prefix

    page_url = f"{base}/services/{SERVICE}"
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + 90
        while True:
            try:
                page = client.get(page_url)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        page.raise_for_status()
        body = page.content
        store = open_store(ArtifactStore.load_default())
        store.put(f"{site_prefix(SERVICE)}baseline.html", body, content_type="text/html")
        static_url = f"{base}/{site_prefix(SERVICE).removeprefix('techdocs/')}baseline.html"
        assert client.get(static_url).content == body
        rows = body.count(b'data-outcome="')
        findings = body.count(b"<td><code>app/module_")
        print(f"service page: {len(body) / 1024:.0f} KiB, {rows} releases, {findings} findings")
        rendered = timings(client, page_url, requests)
        static = timings(client, static_url, requests)
    med, tail = statistics.median(rendered), p95(rendered)
    base_med, base_tail = statistics.median(static), p95(static)
    print(f"{'':18}{'median':>10}{'p95':>10}")
    print(f"{'service page':18}{med:>8.1f}ms{tail:>8.1f}ms")
    print(f"{'static, same size':18}{base_med:>8.1f}ms{base_tail:>8.1f}ms")
    print(f"ratio (page / static): median {med / base_med:.1f}x, p95 {tail / base_tail:.1f}x")
    ok = med < TARGET_MS and tail < TARGET_MS
    print(f"target: median and p95 under {TARGET_MS:.0f} ms: {'met' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
