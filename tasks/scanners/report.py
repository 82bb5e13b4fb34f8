"""The JSON summary of one scan, and the markdown and table views of it.

`ScanSummary` is what the artifact store keeps as ``<service>/<sha>/summary.json``:
every tool's status, every finding with its state (new, unchanged, fixed) and
any acceptance. The gate and the next scan's comparison read it back, so it
is the one record of a scan; the SARIF and the artifacts are views of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tasks.scanners.accepted import AcceptedRisk, AcceptedRisks
from tasks.scanners.base import Finding, ScanStatus, Severity
from tasks.scanners.compare import Comparison
from tasks.scanners.runner import ScanRun

__all__ = [
    "FindingRecord",
    "ScanSummary",
    "ToolRecord",
    "build_summary",
    "finding_rows",
    "ordered",
    "render_markdown",
]

State = Literal["new", "unchanged", "fixed"]


class FindingRecord(BaseModel):
    """A finding as the summary keeps it: the finding, its state and any acceptance."""

    model_config = ConfigDict(frozen=True)

    tool: str
    rule_id: str
    severity: Severity
    file: str
    line: int | None = None
    message: str
    fix_version: str | None = None
    aliases: tuple[str, ...] = ()
    help_uri: str | None = None
    fingerprint: str
    state: State
    accepted_reason: str | None = None
    accepted_until: date | None = None

    @classmethod
    def of(
        cls, finding: Finding, state: State, acceptance: AcceptedRisk | None = None
    ) -> FindingRecord:
        """The record of ``finding``."""
        return cls(
            tool=finding.tool,
            rule_id=finding.rule_id,
            severity=finding.severity,
            file=finding.file,
            line=finding.line,
            message=finding.message,
            fix_version=finding.fix_version,
            aliases=finding.aliases,
            help_uri=finding.help_uri,
            fingerprint=finding.fingerprint,
            state=state,
            accepted_reason=acceptance.reason if acceptance else None,
            accepted_until=acceptance.expires if acceptance else None,
        )

    def to_finding(self) -> Finding:
        """The finding again, e.g. as the baseline of the next scan."""
        return Finding(
            self.tool,
            self.rule_id,
            self.severity,
            self.file,
            self.line,
            self.message,
            self.fix_version,
            self.aliases,
            self.help_uri,
        )

    def accepted_on(self, today: date) -> bool:
        """Whether an acceptance covers it on ``today`` (it may have expired since the scan)."""
        return self.accepted_until is not None and today <= self.accepted_until

    @property
    def ids(self) -> frozenset[str]:
        """The rule id and every alias."""
        return frozenset((self.rule_id, *self.aliases))

    @property
    def where(self) -> str:
        """``file:line``, or the file alone."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class ToolRecord(BaseModel):
    """How one tool's run went."""

    model_config = ConfigDict(frozen=True)

    tool: str
    status: ScanStatus
    error: str | None = None
    duration_seconds: float = 0.0
    findings: int = 0
    version: str | None = None
    """The tool's version as the scanners' environment pins it (scanners.lock)."""
    input_key: str | None = None
    """What the result depends on (`tasks.scanners.inputs`); a later scan with the same key reuses it."""
    carried_from: str | None = None
    """The commit whose scan this tool's result was carried over from; None when the tool ran."""


class ScanSummary(BaseModel):
    """Everything one scan of one commit found, as stored next to its SARIF and SBOM."""

    model_config = ConfigDict(frozen=True)

    service: str
    sha: str
    ref: str
    default_branch: bool
    """Whether the commit was the tip of the default branch when it was scanned."""
    scanned_at: datetime
    baseline_sha: str | None
    """The default-branch commit the findings were compared with; ``None`` for a first scan."""
    tools: tuple[ToolRecord, ...]
    sbom: ToolRecord
    findings: tuple[FindingRecord, ...]
    """Every current finding, new or unchanged, accepted or not."""
    fixed: tuple[FindingRecord, ...] = ()
    """The baseline's findings that are gone."""
    expired_acceptances: tuple[str, ...] = ()
    """Ids in accepted-risks.yaml whose expiry has passed."""
    accepted_risks_error: str | None = None
    """Why accepted-risks.yaml could not be read; nothing was accepted then."""
    accepted_risks: tuple[AcceptedRisk, ...] = ()
    """The commit's accepted-risks.yaml, kept to judge findings added after the scan."""
    matched_advisories: tuple[str, ...] = ()
    """Advisories added from the stored SBOM after the scan, when the vulnerability data changed."""

    @property
    def errored_tools(self) -> tuple[ToolRecord, ...]:
        """Scanners (not the SBOM) that crashed, timed out or could not run."""
        return tuple(t for t in self.tools if t.status is ScanStatus.ERRORED)

    @property
    def status(self) -> Literal["clean", "findings", "errored"]:
        """``errored`` when any tool or the SBOM errored, else whether anything is open."""
        if self.errored_tools or self.sbom.status is ScanStatus.ERRORED:
            return "errored"
        return "findings" if self.open_findings(self.scanned_at.date()) else "clean"

    def open_findings(self, today: date) -> tuple[FindingRecord, ...]:
        """Current findings that no acceptance covers on ``today``."""
        return tuple(f for f in self.findings if not f.accepted_on(today))

    def counts_by_severity(self, today: date) -> dict[str, int]:
        """Open findings per severity, worst first, every severity listed."""
        counts = Counter(f.severity for f in self.open_findings(today))
        order = sorted(Severity, key=lambda s: s.rank, reverse=True)
        return {s.value: counts.get(s, 0) for s in order}


def build_summary(
    *,
    service: str,
    sha: str,
    ref: str,
    default_branch: bool,
    scanned_at: datetime,
    run: ScanRun,
    comparison: Comparison,
    baseline_sha: str | None,
    accepted: AcceptedRisks,
    accepted_error: str | None = None,
) -> ScanSummary:
    """Put one scan's results, comparison and acceptances into its summary."""
    today = scanned_at.date()

    def record(finding: Finding, state: State) -> FindingRecord:
        return FindingRecord.of(finding, state, accepted.acceptance(finding, today))

    findings = [record(f, "new") for f in comparison.new]
    findings += [record(f, "unchanged") for f in comparison.unchanged]
    return ScanSummary(
        service=service,
        sha=sha,
        ref=ref,
        default_branch=default_branch,
        scanned_at=scanned_at,
        baseline_sha=baseline_sha,
        tools=tuple(
            ToolRecord(
                tool=r.tool,
                status=r.status,
                error=r.error,
                duration_seconds=round(r.duration_seconds, 3),
                findings=len(r.findings),
                version=r.version,
                input_key=run.input_keys.get(r.tool),
                carried_from=r.carried_from,
            )
            for r in run.results
        ),
        sbom=ToolRecord(
            tool=run.sbom.tool,
            status=run.sbom.status,
            error=run.sbom.error,
            duration_seconds=round(run.sbom.duration_seconds, 3),
            version=run.sbom.version,
            input_key=run.input_keys.get(run.sbom.tool),
            carried_from=run.sbom.carried_from,
        ),
        findings=ordered(findings),
        fixed=tuple(FindingRecord.of(f, "fixed") for f in comparison.fixed),
        expired_acceptances=tuple(r.id for r in accepted.expired_entries(today)),
        accepted_risks_error=accepted_error,
        accepted_risks=accepted.accepted_risks,
    )


def ordered(findings: Iterable[FindingRecord]) -> tuple[FindingRecord, ...]:
    """Worst first, then by tool and place: the order every view shows."""
    return tuple(
        sorted(findings, key=lambda f: (-f.severity.rank, f.tool, f.file, f.line or 0, f.rule_id))
    )


def finding_rows(summary: ScanSummary) -> list[dict[str, str]]:
    """Every finding, current and fixed, as rows of a table artifact."""
    today = summary.scanned_at.date()
    return [
        {
            "state": f.state,
            "severity": f.severity.value,
            "tool": f.tool,
            "rule": f.rule_id,
            "where": f.where,
            "message": f.message,
            "fix version": f.fix_version or "",
            "accepted": f"until {f.accepted_until}: {f.accepted_reason}"
            if f.accepted_on(today)
            else "",
        }
        for f in (*summary.findings, *summary.fixed)
    ]


def render_markdown(summary: ScanSummary, *, stored_at: str | None = None) -> str:
    """The scan as a markdown artifact: counts by severity, tools, and what is new."""
    today = summary.scanned_at.date()
    counts = summary.counts_by_severity(today)
    new = [f for f in summary.open_findings(today) if f.state == "new"]
    baseline = f"`{summary.baseline_sha[:12]}`" if summary.baseline_sha else "none (first scan)"
    lines = [
        f"# Security scan of `{summary.service}` at `{summary.sha[:12]}`: {summary.status}",
        "",
        f"Ref `{summary.ref}`; compared with the default branch at {baseline}.",
        "",
        "| " + " | ".join(counts) + " |",
        "|" + "---|" * len(counts),
        "| " + " | ".join(str(n) for n in counts.values()) + " |",
        "",
        "| Tool | Version | Status | Findings | Seconds | Error |",
        "|---|---|---|---|---|---|",
    ]
    for tool in (*summary.tools, summary.sbom):
        error = (tool.error or "").replace("|", "\\|").replace("\n", " ")
        status = tool.status.value
        if tool.carried_from:
            status += f" (carried over from `{tool.carried_from[:12]}`: inputs unchanged)"
        lines.append(
            f"| {tool.tool} | {tool.version or '?'} | {status} | {tool.findings} "
            f"| {tool.duration_seconds:.1f} | {error} |"
        )
    lines += ["", f"## New findings ({len(new)})", ""]
    lines += [
        f"- **{f.severity.value}** {f.tool} `{f.rule_id}` at `{f.where}`: {f.message}"
        + (f" (fixed in {f.fix_version})" if f.fix_version else "")
        for f in new
    ] or ["None."]
    accepted = [f for f in summary.findings if f.accepted_on(today)]
    lines += [
        "",
        f"Fixed since the baseline: {len(summary.fixed)}. Accepted risks in effect: {len(accepted)}.",
    ]
    if summary.expired_acceptances:
        lines.append(
            f"Expired acceptances (count again): {', '.join(summary.expired_acceptances)}."
        )
    if summary.accepted_risks_error:
        lines.append(f"accepted-risks.yaml was ignored: {summary.accepted_risks_error}")
    if summary.matched_advisories:
        lines.append(
            "Added after the scan from its SBOM, when the vulnerability data changed: "
            f"{', '.join(summary.matched_advisories)}."
        )
    if stored_at:
        lines += ["", f"SARIF, SBOM and summary: `{stored_at}`"]
    return "\n".join(lines) + "\n"
