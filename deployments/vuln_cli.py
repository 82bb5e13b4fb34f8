"""`slipway vuln affected ID`: which services and versions an advisory touches, from stored SBOMs.

    slipway vuln affected PYSEC-2023-74     by OSV id
    slipway vuln affected CVE-2023-32681    or by an alias

It reads the advisory from the synced OSV data (or OSV online, with the
vulnerability source's ``kind`` set to ``osv``) and matches it against the
stored SBOM of every catalog service's newest default-branch scan (from the
SBOM index, `tasks.scanners.sbom_index`) and deployed commits: nothing is
scanned and no scan is changed; services the index lacks are added to it.
"""

from __future__ import annotations

import argparse
from typing import Any

from deployments.commands import format_rows, use_running_platform
from slipway.errors import InvalidRequest, ObjectNotFound
from slipway.home import SlipwayHome

__all__ = ["add_commands", "run_vuln"]


def add_commands(commands: Any) -> None:
    """Register ``vuln`` on the CLI's subcommands."""
    vuln = commands.add_parser("vuln", help="vulnerabilities: which services an advisory touches")
    sub = vuln.add_subparsers(dest="vuln_command", required=True)
    affected = sub.add_parser(
        "affected", help="services and versions an advisory affects, from their stored SBOMs"
    )
    affected.add_argument("advisory", help="an OSV id such as PYSEC-2023-74, or an alias (CVE)")


def run_vuln(home: SlipwayHome, args: argparse.Namespace) -> int:
    """Print the services and versions ``args.advisory`` affects; exit 0 whether any are or not."""
    use_running_platform(home)
    from blocks import ArtifactStore, VulnerabilitySource
    from tasks.catalog import Catalog
    from tasks.scanners.advisory_impact import affected_by, deployed_versions, impact_rows
    from tasks.scanners.vulnerability_data import read_advisory
    from tasks.storage import open_store

    wanted = args.advisory.strip()
    try:
        record = read_advisory(VulnerabilitySource.load_default(), wanted)
    except ValueError as e:
        raise InvalidRequest(f"could not read {wanted!r}: {e}") from e
    if record is None:
        raise ObjectNotFound(
            f"no advisory {wanted!r} in the vulnerability data",
            hint="check the id, or run the sync-vulnerability-db deployment to fetch newer data",
        )
    names = [e.name for e in Catalog.load_default().entries()]
    store = open_store(ArtifactStore.load_default())
    report = affected_by(store, [record], names, deployed_versions())
    shown = str(record["id"]) + (f" ({wanted})" if wanted != record["id"] else "")
    rows = [
        {k: v for k, v in row.items() if k not in ("advisory", "finding")}
        for row in impact_rows(report)
    ]
    if rows:
        print(format_rows(rows))
    affected = sorted({i.service for i in report.impacts})
    print(
        f"{shown}: {len(affected)} of {len(names)} services affected "
        f"({', '.join(affected) or 'none'}); {report.sboms} SBOMs checked in {report.seconds:.2f} s"
        + (f", {len(report.unscanned)} versions without an SBOM" if report.unscanned else "")
    )
    return 0
