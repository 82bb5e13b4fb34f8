"""Scan a checkout with only the tools whose inputs changed since the service's last scan.

The nightly scan used to run every tool on every service, so twenty
unchanged services cost as much as twenty changed ones. Each scan now
records, per tool and for the SBOM, the key of what its result depends on
(`tasks.scanners.inputs`: the files it reads, its version, its rules and,
for pip-audit, the vulnerability data's revision). The next scan computes
the keys again and takes a tool's result from the last scan when the key is
the same; that result is marked with the commit it came from
(``carried_from``), in the summary and the report.

An errored result is never carried over, and a tool without a key (an
unknown version, advisories served live from OSV) always runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasks.scanners.base import Scanner, ScanResult, ScanStatus
from tasks.scanners.inputs import inventory
from tasks.scanners.report import ScanSummary
from tasks.scanners.runner import ScanRun, run_scanners
from tasks.scanners.sbom import SbomGenerator, SbomResult

__all__ = ["PreviousScan", "run_incrementally"]


@dataclass(frozen=True)
class PreviousScan:
    """The results of a service's last scan that a new scan may take, by input key."""

    results: Mapping[str, tuple[str, ScanResult]] = field(default_factory=dict)
    """Per tool: its input key and its result."""
    sbom: tuple[str, SbomResult] | None = None
    """The SBOM's input key and the SBOM."""

    @classmethod
    def of(cls, summary: ScanSummary, sbom: bytes | None) -> PreviousScan:
        """What ``summary`` (and its stored SBOM document) can lend; errored tools lend nothing."""
        results = {}
        for tool in summary.tools:
            if tool.input_key is None or tool.status is ScanStatus.ERRORED:
                continue
            findings = tuple(f.to_finding() for f in summary.findings if f.tool == tool.tool)
            status = ScanStatus.FINDINGS if findings else ScanStatus.CLEAN
            origin = tool.carried_from or summary.sha
            result = ScanResult(
                tool.tool, status, findings, version=tool.version, carried_from=origin
            )
            results[tool.tool] = (tool.input_key, result)
        lent = None
        record = summary.sbom
        if record.input_key and record.status is ScanStatus.CLEAN and sbom is not None:
            components = len(json.loads(sbom).get("components", []))
            origin = record.carried_from or summary.sha
            bom = SbomResult(
                record.tool,
                record.status,
                sbom,
                components,
                version=record.version,
                carried_from=origin,
            )
            lent = (record.input_key, bom)
        return cls(results, lent)


def run_incrementally(
    path: Path,
    scanners: Sequence[Scanner],
    *,
    previous: PreviousScan | None,
    timeout: float,
    sbom: SbomGenerator | None = None,
) -> ScanRun:
    """Like `run_scanners`, taking each result whose input key matches ``previous`` from there.

    With no ``previous`` every tool runs; the keys are recorded all the same,
    so the next scan can reuse this one.
    """
    started = time.monotonic()
    generator = sbom or SbomGenerator()
    files = inventory(path)
    keys = {s.name: s.input_key(files) for s in scanners}
    keys[generator.tool] = generator.input_key(files)
    lent = previous or PreviousScan()
    carried = {
        name: lent.results[name][1]
        for name, key in keys.items()
        if key is not None and name in lent.results and lent.results[name][0] == key
    }
    bom = lent.sbom[1] if lent.sbom and lent.sbom[0] == keys[generator.tool] else None
    todo = [s for s in scanners if s.name not in carried]
    fresh = run_scanners(path, todo, sbom=generator, timeout=timeout, carried_sbom=bom)
    ran = {r.tool: r for r in fresh.results}
    results = tuple(carried.get(s.name) or ran[s.name] for s in scanners)
    return ScanRun(results, fresh.sbom, time.monotonic() - started, keys)
