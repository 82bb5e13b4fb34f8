"""The nightly scan of 20 services when nothing changed, and when one did, against a full scan.

Each service is a copy of the insecure fixture service (as in
``bench/scan.py``), scanned two at a time with the tools in parallel, as the
nightly scan does. Three passes, each through the summary the artifact store
keeps (`tasks.scanners.incremental`):

1. a full scan of every service (the baseline: nothing to carry over);
2. the same services unchanged: every tool's result is carried over;
3. one service with one Python file changed: bandit and detect-secrets run
   on it again, everything else is carried over.

The checkout of each service (a local git clone, the same in every pass)
and Prefect's task overhead are not in the timing.

Targets: unchanged at most 10% of the full scan, one changed at most 15%.

    python bench/nightly_scan.py [--services 20]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.osv_mirror import MirrorServer, OsvMirror, serve  # noqa: E402
from tasks.scanners.accepted import AcceptedRisks  # noqa: E402
from tasks.scanners.compare import compare  # noqa: E402
from tasks.scanners.history import (  # noqa: E402
    last_default_branch_scan,
    load_sbom,
    save_scan,
)
from tasks.scanners.incremental import PreviousScan, run_incrementally  # noqa: E402
from tasks.scanners.inputs import inventory, tree_digest  # noqa: E402
from tasks.scanners.report import ScanSummary, build_summary  # noqa: E402
from tasks.scanners.runner import default_scanners  # noqa: E402
from tasks.storage import LocalStore  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
UNCHANGED_TARGET = 0.10
ONE_CHANGED_TARGET = 0.15


def scan(
    store: LocalStore, name: str, path: Path, osv: MirrorServer, revision: str, sha: str
) -> ScanSummary:
    """One service's scan as the nightly scan's task does it, without the checkout."""
    last = last_default_branch_scan(store, name)
    previous = PreviousScan.of(last, load_sbom(store, name, last.sha)) if last else None
    with tempfile.TemporaryDirectory() as cache:
        scanners = default_scanners(
            osv_url=osv.query_url,
            osv_forward=osv.forward,
            cache_dir=Path(cache),
            advisories=revision,
        )
        run = run_incrementally(path, scanners, previous=previous, timeout=600)
    summary = build_summary(
        service=name,
        sha=sha,
        ref="main",
        default_branch=True,
        scanned_at=datetime.now(UTC),
        run=run,
        comparison=compare(run.results, [f.to_finding() for f in last.findings] if last else None),
        baseline_sha=last.sha if last else None,
        accepted=AcceptedRisks(),
    )
    save_scan(store, summary, sarif={}, sbom=run.sbom.document, on_default_branch=True)
    return summary


def nightly(
    store: LocalStore, services: list[Path], osv: MirrorServer, revision: str, shas: list[str]
) -> tuple[float, list[ScanSummary]]:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        summaries = list(
            pool.map(
                lambda i: scan(store, f"s{i}", services[i], osv, revision, shas[i]),
                range(len(services)),
            )
        )
    return time.monotonic() - started, summaries


def carried(summaries: list[ScanSummary]) -> int:
    return sum(bool(t.carried_from) for s in summaries for t in (*s.tools, s.sbom))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-nightly-") as tmp,
        serve(OsvMirror.load(FIXTURES / "osv"), socket_path=Path(tmp) / "osv.sock") as server,
    ):
        scratch = Path(tmp)
        store = LocalStore(scratch / "store")
        revision = tree_digest(inventory(FIXTURES / "osv"), lambda _: True)
        services = [
            Path(shutil.copytree(FIXTURES / "insecure-service", scratch / f"s{i}"))
            for i in range(args.services)
        ]
        shas = [f"{i:040x}" for i in range(args.services)]
        full, first = nightly(store, services, server, revision, shas)
        if any(s.status == "errored" for s in first):
            print("a scanner errored in the full scan; the timing would be meaningless")
            return 2
        same, second = nightly(store, services, server, revision, shas)
        changed = next(services[0].rglob("*.py"))
        changed.write_text(changed.read_text() + "\nANSWER = 42\n")
        shas[0] = f"{10**6:040x}"
        one, third = nightly(store, services, server, revision, shas)
    tools = len(first[0].tools) + 1
    print(f"nightly scan of {args.services} services (two at a time, tools in parallel)")
    print(f"full scan            {full:7.2f} s   results carried over {carried(first):3d}")
    print(f"all unchanged        {same:7.2f} s   results carried over {carried(second):3d}")
    print(f"one service changed  {one:7.2f} s   results carried over {carried(third):3d}")
    ran = [t.tool for t in third[0].tools if not t.carried_from]
    print(f"  in the changed service, ran again: {', '.join(ran) or 'nothing'}")
    failed = carried(second) != tools * args.services
    for label, seconds, target in (
        ("unchanged", same, UNCHANGED_TARGET),
        ("one changed", one, ONE_CHANGED_TARGET),
    ):
        ratio = seconds / full
        failed |= ratio > target
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(f"{label} / full = {ratio:.1%} (target <= {target:.0%}): {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
