"""One scan of one commit, stored and shown; and what the nightly scan adds: alerts and a ranking.

A scan checks out a commit, runs bandit, pip-audit, detect-secrets and
checkov at the same time, builds the SBOM, compares the findings with the
default branch's last scan (new, unchanged, fixed), applies the service's
accepted risks, and stores ``scan.sarif``, ``sbom.cdx.json`` and
``summary.json`` under ``<service>/<sha>/`` in the artifact store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks import ArtifactStore, GitServer, VulnerabilitySource
from slipway.errors import ConfigurationError, InvalidRequest
from slipway.sandbox import Forward
from tasks.catalog import Catalog
from tasks.git import checkout, head_commit
from tasks.osv_mirror import OsvSource
from tasks.scanners.accepted import AcceptedRisks, load_accepted_risks
from tasks.scanners.advisories import rate_findings
from tasks.scanners.alerts import FINDING_EVENT, emit_finding
from tasks.scanners.base import Severity
from tasks.scanners.compare import compare
from tasks.scanners.history import (
    baseline_sha,
    last_default_branch_scan,
    load_sbom,
    load_summary,
    save_scan,
    scan_prefix,
)
from tasks.scanners.incremental import PreviousScan, run_incrementally
from tasks.scanners.report import (
    ScanSummary,
    build_summary,
    finding_rows,
    render_markdown,
)
from tasks.scanners.runner import ScanRun, default_scanners
from tasks.scanners.sarif import to_sarif, validate_sarif
from tasks.scanners.vulnerability_data import data_revision, osv_endpoint
from tasks.storage import ObjectStore, open_store

__all__ = [
    "FINDING_EVENT",
    "OsvAccess",
    "alert_new_findings",
    "errored_tools",
    "osv_access",
    "previous_fingerprints",
    "publish_ranking",
    "publish_scan",
    "scan_service",
]

_ALERT = frozenset({Severity.CRITICAL, Severity.HIGH})


@dataclass(frozen=True)
class OsvAccess:
    """What pip-audit queries and how its sandbox reaches it, or why it cannot."""

    url: str | None
    forward: Forward | None
    error: str | None
    source: OsvSource | None = None
    """Where pip-audit's advisories come from, to rate their severity."""
    revision: str | None = None
    """The revision of the advisories served, so an unchanged service's result carries over."""


@contextmanager
def osv_access(source: VulnerabilitySource) -> Iterator[OsvAccess]:
    """The configured OSV source, served to the scans' sandboxes while the context lasts."""
    with ExitStack() as stack:
        revision = data_revision(source)  # before the mirror loads: a sync after it never matches
        try:
            server = stack.enter_context(osv_endpoint(source))
        except ConfigurationError as e:
            # Only the dependency scan needs OSV: the others run, pip-audit shows errored.
            yield OsvAccess(None, None, str(e))
            return
        yield OsvAccess(server.query_url, server.forward, None, server.source, revision)


@task(name="scan-service", cache_policy=NO_CACHE)
def scan_service(
    service: str, commit: str | None, *, osv: OsvAccess, timeout: float, incremental: bool = False
) -> ScanSummary:
    """Scan one commit of ``service`` and store the SARIF, SBOM and summary.

    ``incremental`` takes each tool's result from the service's last
    default-branch scan when the tool's inputs are the same
    (`tasks.scanners.incremental`); otherwise every tool runs.
    """
    logger = get_run_logger()
    server = GitServer.load_default()
    store = open_store(ArtifactStore.load_default())
    repository = Catalog(server).get(service).repository
    with (
        checkout(server, service, commit) as tree,
        tempfile.TemporaryDirectory(prefix="slipway-scan-") as scratch,
    ):
        logger.info("scanning %s at %s (%s)", service, tree.sha[:12], tree.ref)
        previous = _previous_scan(store, service) if incremental else None
        run = _run_tools(tree.path, Path(scratch), osv, previous, timeout)
        accepted, accepted_error = _accepted_risks(tree.path)
        on_default_branch = head_commit(server, service) == tree.sha
    base = baseline_sha(store, service, tree.sha)
    baseline = load_summary(store, service, base) if base else None
    summary = build_summary(
        service=service,
        sha=tree.sha,
        ref=tree.ref,
        default_branch=on_default_branch,
        scanned_at=datetime.now(UTC),
        run=run,
        comparison=compare(
            run.results, [f.to_finding() for f in baseline.findings] if baseline else None
        ),
        baseline_sha=base if baseline else None,
        accepted=accepted,
        accepted_error=accepted_error,
    )
    sarif = to_sarif(summary, repository=repository)
    validate_sarif(sarif)
    save_scan(
        store, summary, sarif=sarif, sbom=run.sbom.document, on_default_branch=on_default_branch
    )
    _log_tools(summary, run)
    return summary


def _run_tools(
    path: Path, scratch: Path, osv: OsvAccess, previous: PreviousScan | None, timeout: float
) -> ScanRun:
    """Every tool whose result ``previous`` cannot lend, with pip-audit's findings rated."""
    scanners = default_scanners(
        osv_url=osv.url,
        osv_forward=osv.forward,
        osv_error=osv.error,
        cache_dir=scratch,
        advisories=osv.revision,
    )
    run = run_incrementally(path, scanners, previous=previous, timeout=timeout)
    if osv.source is not None:  # pip-audit names no severity; its advisories do
        run = replace(run, results=rate_findings(run.results, osv.source.record))
    return run


def _log_tools(summary: ScanSummary, run: ScanRun) -> None:
    """One line per tool on the run's log: what it found, or where its result came from."""
    logger = get_run_logger()
    for tool in summary.tools:
        if tool.carried_from:
            logger.info(
                "%s: carried over from %s, inputs unchanged", tool.tool, tool.carried_from[:12]
            )
            continue
        log = logger.error if tool.error else logger.info
        log(
            "%s: %s, %d findings in %.1f s",
            tool.tool,
            tool.status.value,
            tool.findings,
            tool.duration_seconds,
        )
        if tool.error:
            logger.error("%s errored: %s", tool.tool, tool.error)
    if summary.sbom.error:
        logger.error("SBOM errored: %s", summary.sbom.error)
    else:
        logger.info(
            "SBOM: %d components in %.1f s", run.sbom.components, summary.sbom.duration_seconds
        )


def _previous_scan(store: ObjectStore, service: str) -> PreviousScan | None:
    """What the service's last default-branch scan can lend the next one."""
    last = last_default_branch_scan(store, service)
    return PreviousScan.of(last, load_sbom(store, service, last.sha)) if last else None


def _accepted_risks(root: Path) -> tuple[AcceptedRisks, str | None]:
    try:
        return load_accepted_risks(root), None
    except InvalidRequest as e:
        return AcceptedRisks(), str(e)  # accept nothing rather than guess


@task(name="publish-scan", cache_policy=NO_CACHE)
def publish_scan(summary: ScanSummary) -> None:
    """The markdown and table artifacts of one scan, keyed by service so each keeps a history."""
    prefix = scan_prefix(summary.service, summary.sha)
    create_markdown_artifact(
        markdown=render_markdown(summary, stored_at=f"{prefix}/"),
        key=f"security-scan-{summary.service}",
        description=f"Security scan of {summary.service} at {summary.sha[:12]}: {summary.status}",
    )
    rows = finding_rows(summary) or [{"state": "", "severity": "", "message": "no findings"}]
    create_table_artifact(
        table=rows,
        key=f"security-findings-{summary.service}",
        description=f"Every finding of {summary.service} at {summary.sha[:12]}, new, unchanged and fixed.",
    )


def errored_tools(summary: ScanSummary) -> str:
    """Each errored tool of ``summary`` (the SBOM too) with its error, on one line."""
    tools = [*summary.errored_tools]
    if summary.sbom.error:
        tools.append(summary.sbom)
    return "; ".join(f"{t.tool}: {t.error}" for t in tools)


@task(name="read-previous-findings", cache_policy=NO_CACHE)
def previous_fingerprints(service: str) -> frozenset[str]:
    """The findings of the last scan of the commit the nightly scan is about to scan."""
    tip = head_commit(GitServer.load_default(), service)
    store = open_store(ArtifactStore.load_default())
    before = load_summary(store, service, tip) if tip else None
    return frozenset(f.fingerprint for f in before.findings) if before else frozenset()


@task(name="alert-new-findings", cache_policy=NO_CACHE)
def alert_new_findings(summary: ScanSummary, seen: frozenset[str]) -> None:
    """A ``slipway.security.finding`` event for each new HIGH or CRITICAL finding not in ``seen``."""
    today = summary.scanned_at.date()
    for finding in summary.open_findings(today):
        if (
            finding.state == "new"
            and finding.severity in _ALERT
            and finding.fingerprint not in seen
        ):
            emit_finding(summary.service, summary.sha, finding)


@task(name="publish-security-ranking", cache_policy=NO_CACHE)
def publish_ranking(summaries: list[ScanSummary], failures: dict[str, str]) -> None:
    """One table, the services with the most open findings (worst severities first) on top."""

    def worst_first(summary: ScanSummary) -> tuple[int, int, int, str]:
        counts = summary.counts_by_severity(summary.scanned_at.date())
        return (-sum(counts.values()), -counts["critical"], -counts["high"], summary.service)

    rows: list[dict[str, object]] = []
    for summary in sorted(summaries, key=worst_first):
        counts = summary.counts_by_severity(summary.scanned_at.date())
        rows.append(
            {
                "service": summary.service,
                "open findings": sum(counts.values()),
                **counts,
                "new": sum(1 for f in summary.findings if f.state == "new"),
                "status": summary.status,
                "commit": summary.sha[:12],
            }
        )
    scanned = {s.service for s in summaries}
    rows += [
        {"service": name, "status": f"not scanned: {why}"}
        for name, why in sorted(failures.items())
        if name not in scanned
    ]
    create_table_artifact(
        table=rows or [{"service": "", "status": "the catalog has no services"}],
        key="security-ranking",
        description="Every catalog service ranked by open findings, from the nightly security scan.",
    )
