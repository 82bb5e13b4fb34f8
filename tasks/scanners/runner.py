"""Run every scanner of a scan over one checkout, concurrently or one after another.

Each tool is its own process, so threads are enough to overlap them; the
serial mode exists for the benchmark that compares the two.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slipway.process import cpu_cores
from tasks.scanners.bandit import BanditScanner
from tasks.scanners.base import Scanner, ScanResult, UnavailableScanner
from tasks.scanners.dependencies import DependencyScanner
from tasks.scanners.iac import IacScanner
from tasks.scanners.sbom import SbomGenerator, SbomResult
from tasks.scanners.secrets import SecretsScanner

__all__ = ["ScanRun", "default_scanners", "run_scanners"]


@dataclass(frozen=True)
class ScanRun:
    """Every tool's result for one checkout."""

    results: tuple[ScanResult, ...]
    """One per scanner, in the order the scanners were given."""
    sbom: SbomResult
    """The SBOM, or why there is none."""
    duration_seconds: float
    """Wall time of the whole run."""


def default_scanners(
    *, osv_url: str | None, cache_dir: Path, osv_error: str | None = None
) -> list[Scanner]:
    """bandit, pip-audit, detect-secrets and checkov, as every scan runs them.

    Args:
        osv_url: The OSV ``/v1/query`` endpoint for pip-audit.
        cache_dir: pip-audit's HTTP cache, outside the checkout; give each scan a
            fresh one, so a cached answer never hides a newly synced advisory.
        osv_error: Why there is no endpoint; pip-audit then shows as errored with it.
    """
    dependencies: Scanner
    if osv_url is None:
        dependencies = UnavailableScanner("pip-audit", osv_error or "no OSV endpoint configured")
    else:
        dependencies = DependencyScanner(osv_url, cache_dir=cache_dir)
    return [BanditScanner(), dependencies, SecretsScanner(), IacScanner()]


def run_scanners(
    path: Path,
    scanners: Sequence[Scanner],
    *,
    sbom: SbomGenerator | None = None,
    timeout: float,
    parallel: bool = True,
) -> ScanRun:
    """Scan ``path`` with each scanner and build its SBOM; never raises for a tool's failure.

    In parallel, the tools share one worker per CPU core and the slowest
    (by `Scanner.expected_seconds`) starts first. Starting all five at once
    was slower on two cores: checkov, the longest, got a fifth of the CPU
    until the short tools were done, so it finished last and late.

    Args:
        path: The checkout.
        scanners: The tools to run.
        sbom: The SBOM generator; a default `SbomGenerator` when ``None``.
        timeout: Seconds each tool may take before it is killed and errored.
        parallel: Run the tools at the same time (the default) or one after another.
    """
    generator = sbom or SbomGenerator()
    started = time.monotonic()
    if not parallel:
        results = tuple(s.scan(path, timeout=timeout) for s in scanners)
        bom = generator.generate(path, timeout=timeout)
        return ScanRun(results, bom, time.monotonic() - started)
    slowest_first = sorted(
        range(len(scanners)), key=lambda i: scanners[i].expected_seconds, reverse=True
    )
    workers = min(len(scanners) + 1, cpu_cores())
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        futures = {i: pool.submit(scanners[i].scan, path, timeout=timeout) for i in slowest_first}
        sbom_future = pool.submit(generator.generate, path, timeout=timeout)
        results = tuple(futures[i].result() for i in range(len(scanners)))
        bom = sbom_future.result()
    return ScanRun(results, bom, time.monotonic() - started)
