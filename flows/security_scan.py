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

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed

from blocks import PlatformSettings, VulnerabilitySource
from slipway.errors import InvalidRequest, ScanError
from slipway.names import ServiceName
from tasks.catalog import find_service, list_services
from tasks.scanners.report import ScanSummary
from tasks.scanners.scan import (
    FINDING_EVENT,
    alert_new_findings,
    errored_tools,
    osv_access,
    previous_fingerprints,
    publish_ranking,
    publish_scan,
    scan_service,
)

__all__ = ["FINDING_EVENT", "nightly_security_scan", "scan_service", "security_scan"]


@flow(name="security-scan", log_prints=False)
def security_scan(service: ServiceName, commit: str | None = None) -> ScanSummary:
    """Scan ``service`` at ``commit`` (default: its default branch's tip) and store the results.

    Args:
        service: The catalog name of the service.
        commit: A sha or branch; a push event passes the pushed sha.

    Raises:
        ServiceNotFound: The catalog has no such service.
        ScanError: A scanner or the SBOM errored; everything else was still stored.
    """
    find_service(service)
    settings = PlatformSettings.load_default()
    with osv_access(VulnerabilitySource.load_default()) as osv:
        summary = scan_service(service, commit, osv=osv, timeout=settings.scan_timeout_seconds)
    publish_scan(summary)
    if summary.status == "errored":
        raise ScanError(
            f"the scan of {service} at {summary.sha[:12]} errored, so it is not clean: {errored_tools(summary)}",
            hint="fix the cause named for each tool, then run security-scan again",
        )
    return summary


@flow(name="nightly-security-scan", log_prints=False)
def nightly_security_scan(max_parallel: int | None = None, full: bool = False) -> list[ScanSummary]:
    """Scan every catalog service's default branch, a few at a time, and rank them.

    Emits a ``slipway.security.finding`` event for each new HIGH or CRITICAL
    finding that the previous scan of the same commit did not have, so a
    newly published advisory alerts once, not every night.

    Args:
        max_parallel: Services scanned at once; the platform settings'
            ``nightly_scan_concurrency`` when empty.
        full: Run every tool; by default a tool whose inputs are unchanged
            since the service's last scan does not run, its result carried over.

    Raises:
        ScanError: Some services could not be scanned or errored; the others
            were scanned, stored and ranked all the same.
    """
    logger = get_run_logger()
    settings = PlatformSettings.load_default()
    limit = max_parallel or settings.nightly_scan_concurrency
    if limit < 1:
        raise InvalidRequest(f"max_parallel must be at least 1, not {limit}")
    names: list[str] = [entry.name for entry in list_services()]
    previous = {name: previous_fingerprints(name) for name in names}
    summaries: list[ScanSummary] = []
    failures: dict[str, str] = {}
    with osv_access(VulnerabilitySource.load_default()) as osv:
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
        publish_scan(summary)
        alert_new_findings(summary, previous.get(summary.service, frozenset()))
        if summary.status == "errored":
            failures[summary.service] = errored_tools(summary)
    publish_ranking(summaries, failures)
    if failures:
        raise ScanError(
            f"{len(failures)} of {len(names)} services were not scanned cleanly: "
            + "; ".join(f"{name}: {why}" for name, why in sorted(failures.items())),
            hint="see each service's security-scan artifact; the others were scanned and stored",
        )
    return summaries
