"""Scan time for 1, 5 and 20 services: parallel against serial in the same run, per-tool times.

Each service is a copy of the insecure fixture service (bandit hits, pinned
dependencies with real advisories served by the local OSV mirror, a fake AWS
key, a public S3 bucket in Terraform), scanned by every tool a security scan
runs. Serial: one service after another, tools one by one. Parallel: two
services at a time, tools concurrently, as the nightly scan does.
Target: parallel at least 1.6x faster than serial on 2 cores.

    python bench/scan.py [1 5 20]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.osv_mirror import OsvMirror, serve
from tasks.scanners.runner import ScanRun, default_scanners, run_scanners

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def scan(path: Path, url: str, *, parallel: bool) -> ScanRun:
    with tempfile.TemporaryDirectory() as cache:
        scanners = default_scanners(osv_url=url, cache_dir=Path(cache))
        return run_scanners(path, scanners, timeout=600, parallel=parallel)


def main(counts: list[int]) -> None:
    with serve(OsvMirror.load(FIXTURES / "osv")) as server, tempfile.TemporaryDirectory() as tmp:
        services = [
            Path(shutil.copytree(FIXTURES / "insecure-service", Path(tmp) / f"s{i}"))
            for i in range(max(counts))
        ]
        for n in counts:
            started = time.monotonic()
            serial = [scan(p, server.query_url, parallel=False) for p in services[:n]]
            serial_s = time.monotonic() - started
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=2) as pool:
                parallel = list(
                    pool.map(lambda p: scan(p, server.query_url, parallel=True), services[:n])
                )
            parallel_s = time.monotonic() - started
            tools: dict[str, list[float]] = defaultdict(list)
            for run in serial:
                for r in run.results:
                    tools[r.tool].append(r.duration_seconds)
                tools[run.sbom.tool].append(run.sbom.duration_seconds)
            assert all(
                r.status.value != "errored" for run in serial + parallel for r in run.results
            )
            per_tool = ", ".join(f"{t} {statistics.median(d):.1f}s" for t, d in tools.items())
            verdict = "ok" if serial_s / parallel_s >= 1.6 else "UNDER TARGET"
            print(
                f"{n:>3} services: serial {serial_s:6.1f}s  parallel {parallel_s:6.1f}s  "
                f"speed-up {serial_s / parallel_s:.2f}x (target >= 1.6x: {verdict})  "
                f"| per tool (median, serial): {per_tool}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 5, 20])
