"""Advisory impact over N stored SBOMs, against rescanning a sample of services in full.

Set-up, not timed: N service versions in an artifact store (a local directory,
or S3 on moto with ``--store s3``), each with its scan summary, its default
branch history and a CycloneDX SBOM of ``--components`` packages drawn from a
pool, a few of them at versions the advisories affect, stored as a scan
stores them (so the SBOM index holds each service's components).

Timed, the way ``sync-vulnerability-db`` does it after a sync
(`tasks.scanners.advisory_impact`): finding each service's current version
and its SBOM's components (the SBOM index's 16 shards), matching ``--advisories`` new advisories (the four
fixture advisories and synthetic ones on the pool's packages), and adding
each new finding to the affected stored scans (summary and SARIF).

For comparison, same run and untimed toward the target: reading and
matching as before the SBOM index (each service's history, then its SBOM),
which must give the very same impacts.

Baseline, same run: a full rescan (every scanner and the SBOM, as the nightly
scan runs them) of ``--sample`` copies of the insecure fixture service, one
after another; its mean per service times N is what finding the impact by
rescanning would cost.

Target: 1,000 stored SBOMs in at most 2 s.

    python bench/impact.py [--sboms 1000] [--store local|s3] [--sample 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from s3_server import moto_server  # noqa: E402  # bench/, first on sys.path

from tasks.osv_mirror import OsvMirror, serve  # noqa: E402
from tasks.scanners.accepted import AcceptedRisks  # noqa: E402
from tasks.scanners.advisory_impact import affected_by, record_impacts  # noqa: E402
from tasks.scanners.compare import compare  # noqa: E402
from tasks.scanners.history import save_scan  # noqa: E402
from tasks.scanners.impact import match, read_sboms, service_versions  # noqa: E402
from tasks.scanners.report import build_summary  # noqa: E402
from tasks.scanners.runner import ScanRun, default_scanners, run_scanners  # noqa: E402
from tasks.scanners.sbom_index import read_index  # noqa: E402
from tasks.storage import LocalStore, ObjectStore, S3Store  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
TARGET_SECONDS = 2.0
POOL = 400  # distinct packages across the platform's services


def sbom(rng: random.Random, components: int) -> bytes:
    """A CycloneDX document as ``cyclonedx-py requirements`` writes it."""
    names = rng.sample([f"pkg-{n:03d}" for n in range(POOL)], components - 2)
    pins = [(n, f"1.{rng.randint(0, 9)}.{rng.randint(0, 9)}") for n in names]
    # One service in fifty still pins the old, vulnerable requests and urllib3.
    old = rng.random() < 0.02
    pins += [("requests", "2.19.0" if old else rng.choice(["2.31.0", "2.32.3"]))]
    pins += [("urllib3", "1.26.5" if old else rng.choice(["1.26.18", "2.2.1"]))]
    return json.dumps(
        {
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "components": [
                {
                    "bom-ref": f"requirements-L{i}",
                    "name": name,
                    "purl": f"pkg:pypi/{name}@{version}",
                    "type": "library",
                    "version": version,
                }
                for i, (name, version) in enumerate(pins, start=1)
            ],
        },
        indent=2,
    ).encode()


def advisories(count: int) -> list[dict[str, Any]]:
    """The fixture advisories, and synthetic ones each affecting 1.4.0-1.4.4 of one pool package."""
    found = [json.loads(p.read_text()) for p in sorted((FIXTURES / "osv").glob("*.json"))]
    for n in range(count - len(found)):
        found.append(
            {
                "id": f"PYSEC-2099-{n}",
                "modified": "2099-01-01T00:00:00Z",
                "aliases": [f"CVE-2099-{n}"],
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}
                ],
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": f"pkg-{(n * 37) % POOL:03d}"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "1.4.0"}, {"fixed": "1.4.5"}],
                            }
                        ],
                    }
                ],
            }
        )
    return found


def populate(store: ObjectStore, count: int, components: int) -> list[str]:
    """``count`` services, each with one scanned default-branch commit and its SBOM."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks.scanners.sbom import SbomResult

    rng = random.Random(25)
    documents = [sbom(rng, components) for _ in range(count)]
    empty = ScanRun((), SbomResult("cyclonedx-py", _clean(), b"{}", 0, None, 0.1), 0.1)

    def one(n: int) -> str:
        name = f"svc-{n:04d}"
        summary = build_summary(
            service=name,
            sha=f"{n:040x}",
            ref="main",
            default_branch=True,
            scanned_at=datetime.now(UTC),
            run=empty,
            comparison=compare((), None),
            baseline_sha=None,
            accepted=AcceptedRisks(),
        )
        sarif = {"version": "2.1.0", "runs": []}
        save_scan(store, summary, sarif=sarif, sbom=documents[n], on_default_branch=True)
        return name

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


def _clean() -> Any:
    from tasks.scanners.base import ScanStatus

    return ScanStatus.CLEAN


def rescan_sample(sample: int, scratch: Path) -> float:
    """Seconds per service of a full rescan (every tool and the SBOM), one service at a time."""
    services = [
        Path(shutil.copytree(FIXTURES / "insecure-service", scratch / f"sample-{i}"))
        for i in range(sample)
    ]
    with serve(OsvMirror.load(FIXTURES / "osv"), socket_path=scratch / "osv.sock") as osv:
        started = time.monotonic()
        for path in services:
            cache = Path(tempfile.mkdtemp(dir=scratch))
            tools = default_scanners(
                osv_url=osv.query_url, osv_forward=osv.forward, cache_dir=cache
            )
            run = run_scanners(path, tools, timeout=600)
            broken = [r.tool for r in run.results if r.error] + (
                [run.sbom.tool] if run.sbom.error else []
            )
            if broken:
                raise SystemExit(f"the sample rescan errored ({', '.join(broken)}): no baseline")
        return (time.monotonic() - started) / sample


def read_one_by_one(
    store: ObjectStore, names: list[str], records: list[dict[str, Any]], expected: tuple[Any, ...]
) -> float:
    """Seconds to read and match as before the SBOM index: each history, then each SBOM.

    Also checks that the index gave the very same impacts, in the same order.
    """
    started = time.monotonic()
    sboms, _ = read_sboms(store, service_versions(store, names, {}))
    impacts = match(records, sboms)
    seconds = time.monotonic() - started
    if tuple(impacts) != expected:
        raise SystemExit("the SBOM index and the SBOMs themselves gave different impacts")
    return seconds


def open_bench_store(kind: str, scratch: Path, endpoint: str | None) -> ObjectStore:
    """A local store under ``scratch``, or a bucket on the moto server at ``endpoint``."""
    if kind == "local" or endpoint is None:
        return LocalStore(scratch / "store")
    from blocks.s3 import S3Connection

    connection = S3Connection(
        endpoint_url=endpoint,
        access_key_id="AKIABENCH",
        secret_access_key="bench-secret",
        path_style=True,
    )
    store = S3Store(bucket="bench-impact", prefix="", connection=connection)
    store.ensure_bucket()
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sboms", type=int, default=1000)
    parser.add_argument("--components", type=int, default=30, help="packages per SBOM")
    parser.add_argument("--advisories", type=int, default=50, help="new advisories matched")
    parser.add_argument("--store", choices=["local", "s3"], default="local")
    parser.add_argument("--sample", type=int, default=3, help="services rescanned for the baseline")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-impact-") as tmp,
        moto_server() if args.store == "s3" else nullcontext(None) as endpoint,
    ):
        scratch = Path(tmp)
        store = open_bench_store(args.store, scratch, endpoint)
        names = populate(store, args.sboms, args.components)
        indexed = len(read_index(store).entries)  # a lost entry is read the old way, slower
        records = advisories(args.advisories)
        started = time.monotonic()
        report = affected_by(store, records, names, {})
        matched = time.monotonic() - started
        added = record_impacts(store, report.impacts, repositories={}, today=date.today())
        total = time.monotonic() - started
        one_by_one = read_one_by_one(store, names, records, report.impacts)
        per_service = rescan_sample(args.sample, scratch)
    rescan = per_service * args.sboms
    affected = len({i.version for i in report.impacts})
    print(
        f"advisory impact, {args.sboms} SBOMs of {args.components} packages, "
        f"{len(records)} advisories, {args.store} store"
    )
    print(
        f"  read and matched      {matched:7.2f} s   ({report.sboms} SBOMs; "
        f"{indexed} services in the SBOM index when timing began)"
    )
    print(
        f"  findings recorded     {total - matched:7.2f} s   ({len(added)} findings on {affected} scans)"
    )
    print(f"  total                 {total:7.2f} s")
    print(
        f"  without the SBOM index: read and matched {one_by_one:.2f} s "
        f"(each history and SBOM read; same impacts)"
    )
    print(
        f"  baseline: full rescan {per_service:7.2f} s per service (mean of {args.sample}), "
        f"{rescan:.0f} s for {args.sboms}"
    )
    verdict = "ok" if total <= TARGET_SECONDS else "OVER TARGET"
    print(
        f"impact {total:.2f} s = {total / rescan:.3%} of a rescan (target <= {TARGET_SECONDS:.0f} s): {verdict}"
    )
    return 0 if total <= TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
