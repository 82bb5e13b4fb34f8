"""Security scans: every push, and every service each night.

One scan checks out a commit, runs bandit, pip-audit, detect-secrets and
checkov at the same time, builds the SBOM, compares the findings with the
default branch's last scan (new, unchanged, fixed), applies the service's
accepted risks, and stores ``scan.sarif``, ``sbom.cdx.json`` and
``summary.json`` under ``<service>/<sha>/`` in the artifact store. The
security gate (`tasks.scanners.gate.enforce_gate`) reads that summary before
a deployment to prod.

A scan whose tool crashed, timed out or could not run is stored and shown,
then the run fails: errored is never clean.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed

from blocks import ArtifactStore, GitServer, PlatformSettings, VulnerabilitySource
from slipway.errors import ConfigurationError, InvalidRequest, ScanError
from slipway.names import check_dns_label
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
    record_default_branch_scan,
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
from tasks.scanners.runner import default_scanners
from tasks.scanners.sarif import to_sarif, validate_sarif
from tasks.scanners.vulnerability_data import data_revision, osv_endpoint
from tasks.storage import ObjectStore, open_store

__all__ = ["FINDING_EVENT", "nightly_security_scan", "scan_service", "security_scan"]

_ALERT = frozenset({Severity.CRITICAL, Severity.HIGH})


@dataclass(frozen=True)
class _Osv:
    """What pip-audit queries and how its sandbox reaches it, or why it cannot."""

    url: str | None
    forward: Forward | None
    error: str | None
    source: OsvSource | None = None
    """Where pip-audit's advisories come from, to rate their severity."""
    revision: str | None = None
    """The revision of the advisories served, so an unchanged service's result carries over."""


@contextmanager
def _osv(source: VulnerabilitySource) -> Iterator[_Osv]:
    """The configured OSV source, served to the scans' sandboxes while the context lasts."""
    with ExitStack() as stack:
        revision = data_revision(source)  # before the mirror loads: a sync after it never matches
        try:
            server = stack.enter_context(osv_endpoint(source))
        except ConfigurationError as e:
            # Only the dependency scan needs OSV: the others run, pip-audit shows errored.
            yield _Osv(None, None, str(e))
            return
        yield _Osv(server.query_url, server.forward, None, server.source, revision)


@task(name="scan-service", cache_policy=NO_CACHE)
def scan_service(
    service: str, commit: str | None, *, osv: _Osv, timeout: float, incremental: bool = False
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
        scanners = default_scanners(
            osv_url=osv.url,
            osv_forward=osv.forward,
            osv_error=osv.error,
            cache_dir=Path(scratch),
            advisories=osv.revision,
        )
        previous = _previous_scan(store, service) if incremental else None
        run = run_incrementally(tree.path, scanners, previous=previous, timeout=timeout)
        if osv.source is not None:  # pip-audit names no severity; its advisories do
            run = replace(run, results=rate_findings(run.results, osv.source.record))
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
    save_scan(store, summary, sarif=sarif, sbom=run.sbom.document)
    if on_default_branch:
        record_default_branch_scan(store, summary)
    for tool in summary.tools:
        if tool.carried_from:
            logger.info(
                "%s: carried over from %s, its inputs unchanged", tool.tool, tool.carried_from[:12]
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
    return summary


def _previous_scan(store: ObjectStore, service: str) -> PreviousScan | None:
    """What the service's last default-branch scan can lend the next one."""
    last = last_default_branch_scan(store, service)
    return PreviousScan.of(last, load_sbom(store, service, last.sha)) if last else None


def _accepted_risks(root: Path) -> tuple[AcceptedRisks, str | None]:
    try:
        return load_accepted_risks(root), None
    except InvalidRequest as e:
        return AcceptedRisks(), str(e)  # accept nothing rather than guess


def _publish(summary: ScanSummary) -> None:
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


def _errored(summary: ScanSummary) -> str:
    tools = [*summary.errored_tools]
    if summary.sbom.error:
        tools.append(summary.sbom)
    return "; ".join(f"{t.tool}: {t.error}" for t in tools)


@flow(name="security-scan", log_prints=False)
def security_scan(service: str, commit: str | None = None) -> ScanSummary:
    """Scan ``service`` at ``commit`` (default: its default branch's tip) and store the results.

    Args:
        service: The catalog name of the service.
        commit: A sha or branch; a push event passes the pushed sha.

    Raises:
        ServiceNotFound: The catalog has no such service.
        ScanError: A scanner or the SBOM errored; everything else was still stored.
    """
    check_dns_label(service, what="service name")
    Catalog.load_default().get(service)
    settings = PlatformSettings.load_default()
    with _osv(VulnerabilitySource.load_default()) as osv:
        summary = scan_service(service, commit, osv=osv, timeout=settings.scan_timeout_seconds)
    _publish(summary)
    if summary.status == "errored":
        raise ScanError(
            f"the scan of {service} at {summary.sha[:12]} errored, so it is not clean: {_errored(summary)}",
            hint="fix the cause named for each tool, then run security-scan again",
        )
    return summary


@flow(name="nightly-security-scan", log_prints=False)
def nightly_security_scan(max_parallel: int | None = None, full: bool = False) -> list[ScanSummary]:
    """Scan every catalog service's default branch, a few at a time, and rank them.

    A tool whose inputs (the files it reads, its version and rules, the
    advisories) are the same as at the service's last scan is not run
    again: its result is carried over, and the report says from which commit.

    Emits a ``slipway.security.finding`` event for each new HIGH or CRITICAL
    finding that the previous scan of the same commit did not have, so a
    newly published advisory alerts once, not every night.

    Args:
        max_parallel: Services scanned at once; the platform settings'
            ``nightly_scan_concurrency`` when empty.
        full: Run every tool on every service, carrying nothing over.

    Raises:
        ScanError: Some services could not be scanned or errored; the others
            were scanned, stored and ranked all the same.
    """
    logger = get_run_logger()
    settings = PlatformSettings.load_default()
    limit = max_parallel or settings.nightly_scan_concurrency
    if limit < 1:
        raise InvalidRequest(f"max_parallel must be at least 1, not {limit}")
    names = [entry.name for entry in Catalog.load_default().entries()]
    previous = {name: _previous_fingerprints(name) for name in names}
    summaries: list[ScanSummary] = []
    failures: dict[str, str] = {}
    with _osv(VulnerabilitySource.load_default()) as osv:
        waiting, running = list(names), dict[PrefectFuture[ScanSummary], str]()
        while waiting or running:
            while waiting and len(running) < limit:
                name = waiting.pop(0)
                future = scan_service.submit(
                    name,
                    None,
                    osv=osv,
                    timeout=settings.scan_timeout_seconds,
                    incremental=not full,
                )
                running[future] = name
            done = next(as_completed(list(running)))
            name = running.pop(done)
            try:
                summaries.append(done.result())
            except Exception as e:  # one service's failure must not stop the others
                failures[name] = str(e)
                logger.error("could not scan %s: %s", name, e)
    for summary in summaries:
        _publish(summary)
        _alert_new(summary, previous.get(summary.service, frozenset()))
        if summary.status == "errored":
            failures[summary.service] = _errored(summary)
    _rank(summaries, failures)
    if failures:
        raise ScanError(
            f"{len(failures)} of {len(names)} services were not scanned cleanly: "
            + "; ".join(f"{name}: {why}" for name, why in sorted(failures.items())),
            hint="see each service's security-scan artifact; the others were scanned and stored",
        )
    return summaries


def _previous_fingerprints(service: str) -> frozenset[str]:
    """The findings of the last scan of the commit the nightly scan is about to scan."""
    tip = head_commit(GitServer.load_default(), service)
    store = open_store(ArtifactStore.load_default())
    before = load_summary(store, service, tip) if tip else None
    return frozenset(f.fingerprint for f in before.findings) if before else frozenset()


def _alert_new(summary: ScanSummary, seen: frozenset[str]) -> None:
    today = summary.scanned_at.date()
    for finding in summary.open_findings(today):
        if (
            finding.state == "new"
            and finding.severity in _ALERT
            and finding.fingerprint not in seen
        ):
            emit_finding(summary.service, summary.sha, finding)


def _rank(summaries: list[ScanSummary], failures: dict[str, str]) -> None:
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
