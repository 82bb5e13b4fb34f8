"""New, unchanged and fixed: one scan's findings against a baseline scan's.

Findings are matched by `Finding.fingerprint`, which ignores line numbers,
so moving code does not make a finding look fixed and new again. Matching
counts duplicates: two identical findings now against one before is one
unchanged and one new.

A finding of a tool that errored this time is never called fixed: the tool
did not look, so nothing is known about it.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tasks.scanners.base import Finding, ScanResult, ScanStatus

__all__ = ["Comparison", "FindingState", "compare"]


class FindingState(enum.Enum):
    """A finding's state against the baseline, as SARIF's ``baselineState`` words it."""

    NEW = "new"
    UNCHANGED = "unchanged"
    FIXED = "fixed"


@dataclass(frozen=True)
class Comparison:
    """The current findings split by state, plus the baseline's that are gone."""

    new: tuple[Finding, ...]
    """In this scan, not in the baseline (all of them when there is no baseline)."""
    unchanged: tuple[Finding, ...]
    """In both."""
    fixed: tuple[Finding, ...]
    """In the baseline, gone now, from tools that ran cleanly this time."""


def compare(results: Sequence[ScanResult], baseline: Iterable[Finding] | None) -> Comparison:
    """Compare this scan's results with the baseline's findings (``None``: no baseline)."""
    current = [f for r in results for f in r.findings]
    if baseline is None:
        return Comparison(tuple(current), (), ())
    remaining: dict[str, list[Finding]] = defaultdict(list)
    for finding in baseline:
        remaining[finding.fingerprint].append(finding)
    new: list[Finding] = []
    unchanged: list[Finding] = []
    for finding in current:
        if remaining.get(finding.fingerprint):
            remaining[finding.fingerprint].pop()
            unchanged.append(finding)
        else:
            new.append(finding)
    looked = {r.tool for r in results if r.status is not ScanStatus.ERRORED}
    fixed = [f for left in remaining.values() for f in left if f.tool in looked]
    return Comparison(tuple(new), tuple(unchanged), tuple(fixed))
