"""Scan time for 1, 5 and 20 services: parallel against serial in the same run, per-tool times.

Each service is a copy of the insecure fixture service (bandit hits, pinned
dependencies with real advisories served by the local OSV mirror, a fake AWS
key, a public S3 bucket in Terraform), scanned by every tool a security scan
runs. Serial: one service after another, tools one by one. Parallel: two
services at a time, tools concurrently, as the nightly scan does.
Target: parallel at least 1.6x faster than serial on 2 cores.

Each size is timed ``--repeat`` times on both sides, alternating which goes
first, and the medians are compared: single rounds of a few seconds on a
2-core machine vary by a third.

    python bench/scan.py [--sizes 1 5 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.osv_mirror import MirrorServer, OsvMirror, serve
from tasks.scanners.runner import ScanRun, default_scanners, run_scanners

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def scan(path: Path, osv: MirrorServer, *, parallel: bool) -> ScanRun:
    with tempfile.TemporaryDirectory() as cache:
        scanners = default_scanners(
            osv_url=osv.query_url, osv_forward=osv.forward, cache_dir=Path(cache)
        )
        return run_scanners(path, scanners, timeout=600, parallel=parallel)


def timed_round(
    services: list[Path], osv: MirrorServer, *, serial_first: bool
) -> tuple[float, float, list[ScanRun], list[ScanRun]]:
    """One serial and one parallel pass over ``services``, in the order asked."""

    def serial() -> tuple[float, list[ScanRun]]:
        started = time.monotonic()
        runs = [scan(p, osv, parallel=False) for p in services]
        return time.monotonic() - started, runs

    def parallel() -> tuple[float, list[ScanRun]]:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda p: scan(p, osv, parallel=True), services))
        return time.monotonic() - started, runs

    if serial_first:
        (serial_s, serial_runs), (parallel_s, parallel_runs) = serial(), parallel()
    else:
        (parallel_s, parallel_runs), (serial_s, serial_runs) = parallel(), serial()
    return serial_s, parallel_s, serial_runs, parallel_runs


def main(counts: list[int], repeat: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(OsvMirror.load(FIXTURES / "osv"), socket_path=Path(tmp) / "osv.sock") as server,
    ):
        services = [
            Path(shutil.copytree(FIXTURES / "insecure-service", Path(tmp) / f"s{i}"))
            for i in range(max(counts))
        ]
        for n in counts:
            serial_times: list[float] = []
            parallel_times: list[float] = []
            tools: dict[str, list[float]] = defaultdict(list)
            for round_ in range(repeat):
                serial_s, parallel_s, serial, parallel = timed_round(
                    services[:n], server, serial_first=round_ % 2 == 0
                )
                assert all(
                    r.status.value != "errored" for run in serial + parallel for r in run.results
                ), "a scanner errored; the timing would be meaningless"
                serial_times.append(serial_s)
                parallel_times.append(parallel_s)
                for run in serial:
                    for r in run.results:
                        tools[r.tool].append(r.duration_seconds)
                    tools[run.sbom.tool].append(run.sbom.duration_seconds)
            serial_s = statistics.median(serial_times)
            parallel_s = statistics.median(parallel_times)
            rounds = ", ".join(
                f"{s / p:.2f}x" for s, p in zip(serial_times, parallel_times, strict=True)
            )
            per_tool = ", ".join(f"{t} {statistics.median(d):.1f}s" for t, d in tools.items())
            verdict = "ok" if serial_s / parallel_s >= 1.6 else "UNDER TARGET"
            print(
                f"{n:>3} services: serial {serial_s:6.1f}s  parallel {parallel_s:6.1f}s  "
                f"speed-up {serial_s / parallel_s:.2f}x (target >= 1.6x: {verdict}; "
                f"medians of {repeat}, rounds {rounds})"
                f"\n     per tool (median, serial): {per_tool}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size; medians compared")
    args = parser.parse_args()
    if args.repeat < 1 or min(args.sizes) < 1:
        parser.error("--repeat and every size must be at least 1")
    main(args.sizes, args.repeat)
