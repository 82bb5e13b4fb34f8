"""Run every scanner of a scan over one checkout, concurrently or one after another.

Each tool is its own process, so threads are enough to overlap them; the
serial mode exists for the benchmark that compares the two. Every tool and
the SBOM run confined (`tasks.scanners.base.scan_sandbox`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from slipway.errors import MissingDependency
from slipway.process import cpu_cores
from slipway.sandbox import Forward
from tasks.scanners.bandit import BanditScanner
from tasks.scanners.base import (
    Reach,
    Scanner,
    ScanResult,
    ScanStatus,
    UnavailableScanner,
    scan_sandbox,
)
from tasks.scanners.dependencies import DependencyScanner
from tasks.scanners.iac import IacScanner
from tasks.scanners.sbom import SbomGenerator, SbomResult
from tasks.scanners.secrets import SecretsScanner
from tasks.scanners.toolenv import ToolEnvironment

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
    input_keys: Mapping[str, str | None] = field(default_factory=dict)
    """Each tool's and the SBOM's input key (`tasks.scanners.inputs`), when known."""


def default_scanners(
    *,
    osv_url: str | None,
    cache_dir: Path,
    osv_error: str | None = None,
    osv_forward: Forward | None = None,
    advisories: str | None = None,
) -> list[Scanner]:
    """bandit, pip-audit, detect-secrets and checkov, as every scan runs them.

    Args:
        osv_url: The OSV ``/v1/query`` endpoint for pip-audit, as its sandbox sees it.
        cache_dir: pip-audit's HTTP cache, outside the checkout; give each scan a
            fresh one, so a cached answer never hides a newly synced advisory.
        osv_error: Why there is no endpoint; pip-audit then shows as errored with it.
        osv_forward: How pip-audit's sandbox reaches ``osv_url`` (the mirror's
            socket, `tasks.scanners.vulnerability_data.osv_endpoint`); without
            it pip-audit reaches nothing and errors.
        advisories: The revision of the data behind ``osv_url``
            (`tasks.scanners.vulnerability_data.data_revision`), so a later
            scan can reuse pip-audit's result while neither it nor the
            requirements changed.

    Raises:
        MissingDependency: the scanners' tool environment does not exist; names the fix.
    """
    tools = ToolEnvironment.default().require()
    dependencies: Scanner
    if osv_url is None:
        dependencies = UnavailableScanner("pip-audit", osv_error or "no OSV endpoint configured")
    else:
        dependencies = DependencyScanner(
            osv_url, cache_dir=cache_dir, tools=tools, advisories=advisories
        )
        forwards = (osv_forward,) if osv_forward else ()
        dependencies.reach = Reach(writable=(cache_dir,), forwards=forwards)
    return [
        BanditScanner(tools=tools),
        dependencies,
        SecretsScanner(tools=tools),
        IacScanner(tools=tools),
    ]


_T = TypeVar("_T")
_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _tool_slots() -> threading.BoundedSemaphore:
    """One slot per CPU core, shared by every scan in this process."""
    global _slots
    cores = cpu_cores()
    with _slots_lock:
        if _slots is None or _slots[0] != cores:
            _slots = (cores, threading.BoundedSemaphore(cores))
        return _slots[1]


def run_scanners(
    path: Path,
    scanners: Sequence[Scanner],
    *,
    sbom: SbomGenerator | None = None,
    timeout: float,
    parallel: bool = True,
    carried_sbom: SbomResult | None = None,
) -> ScanRun:
    """Scan ``path`` with each scanner and build its SBOM; never raises for a tool's failure.

    In parallel, the slowest tool (by `Scanner.expected_seconds`) starts
    first, and the tools of every scan in this process share one slot per CPU
    core (the nightly scan runs several services at once). Starting all five
    at once was slower on two cores: checkov, the longest, got a fifth of the
    CPU until the short tools were done, so it finished last and late.

    Args:
        path: The checkout.
        scanners: The tools to run.
        sbom: The SBOM generator; a default `SbomGenerator` when ``None``.
        timeout: Seconds each tool may take before it is killed and errored.
        parallel: Run the tools at the same time (the default) or one after another.
        carried_sbom: An earlier SBOM that still holds; none is generated then.
    """
    generator = sbom or SbomGenerator()
    started = time.monotonic()

    def confined_sbom(path: Path, *, timeout: float) -> SbomResult:
        if carried_sbom is not None:  # still holds: nothing to generate
            return carried_sbom
        try:
            with scan_sandbox(path).applied():
                return generator.generate(path, timeout=timeout)
        except MissingDependency as e:  # no sandbox: errored, never unconfined
            return SbomResult(generator.tool, ScanStatus.ERRORED, error=str(e))

    if not parallel:
        results = tuple(s.scan(path, timeout=timeout) for s in scanners)
        bom = confined_sbom(path, timeout=timeout)
        return ScanRun(results, bom, time.monotonic() - started)
    slowest_first = sorted(
        range(len(scanners)), key=lambda i: scanners[i].expected_seconds, reverse=True
    )
    workers = min(len(scanners) + 1, cpu_cores())
    slots = _tool_slots()

    def in_slot(run: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        with slots:
            return run(*args, **kwargs)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        futures = {
            i: pool.submit(in_slot, scanners[i].scan, path, timeout=timeout) for i in slowest_first
        }
        sbom_future = pool.submit(in_slot, confined_sbom, path, timeout=timeout)
        results = tuple(futures[i].result() for i in range(len(scanners)))
        bom = sbom_future.result()
    return ScanRun(results, bom, time.monotonic() - started)
