"""How long publish-docs takes for a 200-page site: the first publish against what follows.

The real flow runs on a temporary Prefect server against a local git server
and an artifact store (a local directory, or S3 on moto, in its own process,
with ``--store s3``), with the flow-run patches every platform flow run has
(`slipway.prefect_patches.apply_flow_run_patches`). The site uses the
material theme and links its pages to each other. Three publishes are
timed: the first (everything built and sent), the same commit again
(nothing to do), and a commit that changes one page (that page rendered,
and only the files it changed sent, for the current site and its version).
The server's start is not counted.

Targets: the no-change rerun takes at most 20% of the first publish, and
the one-page change at most 25%.

    python bench/docs.py [--pages 200] [--store local|s3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from s3_server import moto_server  # bench/, first on sys.path

from slipway.names import ServiceName

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RERUN_TARGET = 0.20
CHANGE_TARGET = 0.25


def site_files(pages: int) -> dict[str, str]:
    """A material site of ``pages`` pages in ten sections, each page linking its neighbours."""
    files = {
        "mkdocs.yml": (
            "site_name: Bench service\nsite_description: A large docs site.\n"
            "theme:\n  name: material\n  font: false\n"
        ),
        "docs/index.md": "# Bench service\n\nSee [the first page](section-0/page-0.md).\n",
    }
    for n in range(pages):
        section, following = n % 10, (n + 1) % pages
        body = "\n\n".join(
            f"Paragraph {p} of page {n}: the service does things, reliably and quickly."
            for p in range(12)
        )
        files[f"docs/section-{section}/page-{n}.md"] = (
            f"# Page {n}\n\n{body}\n\n## Next\n\n"
            f"Continue with [page {following}](../section-{following % 10}/page-{following}.md).\n"
        )
    return files


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--store", choices=["local", "s3"], default="local")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Loopback only: the temporary server must not try to send telemetry.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"

    from prefect.testing.utilities import prefect_test_harness

    from blocks import register_block_types
    from slipway.prefect_patches import apply_flow_run_patches

    apply_flow_run_patches()  # as every flow run of the platform does
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-docs-") as scratch,
        prefect_test_harness(server_startup_timeout=180),
        moto_server() if args.store == "s3" else nullcontext(None) as endpoint,
    ):
        register_block_types()
        return run(Path(scratch), args.pages, endpoint)


def run(scratch: Path, pages: int, endpoint: str | None) -> int:
    from blocks import ALL_BLOCKS, DEFAULT_DOCUMENT, ArtifactStore, GitServer, S3Connection
    from flows.publish_docs import publish_docs
    from slipway.home import Ports, SlipwayHome
    from tasks.catalog import Catalog, CatalogEntry
    from tasks.git import create_repository, publish_directory, repository_url

    home = SlipwayHome(scratch / "home")
    home.ensure()
    os.environ["SLIPWAY_HOME"] = str(home.root)  # the flow's render cache lives there
    for block_type in ALL_BLOCKS:
        if block_type is not S3Connection:
            block_type.local_default(home, Ports()).save(DEFAULT_DOCUMENT, overwrite=True)
    if endpoint is not None:
        from tasks.storage import S3Store

        s3 = S3Connection(
            endpoint_url=endpoint,
            access_key_id="AKIABENCH",
            secret_access_key="bench-secret",
            path_style=True,
        )
        S3Store(bucket="bench-docs", prefix="", connection=s3).ensure_bucket()
        ArtifactStore(kind="s3", bucket="bench-docs", s3=s3).save(DEFAULT_DOCUMENT, overwrite=True)

    server = GitServer.load_default()
    source = scratch / "source"
    for name, text in site_files(pages).items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    create_repository(server, "bench")
    publish_directory(server, "bench", source, message="a large docs site")
    entry = CatalogEntry(
        name="bench", owner="group:bench", repository=repository_url(server, "bench"), port=8080
    )
    Catalog(server).save(entry, message="add bench")

    def timed(label: str) -> float:
        start = time.perf_counter()
        result = publish_docs(service=ServiceName("bench"))
        elapsed = time.perf_counter() - start
        sent = len(result.live.uploaded) if result.live else 0
        copied = len(result.version_copy.uploaded) if result.version_copy else 0
        print(
            f"{label:<22} {elapsed:7.2f} s   site files sent {sent:4d}   version files sent {copied:4d}"
        )
        return elapsed

    print(f"publish-docs, {pages} pages, {'s3' if endpoint else 'local'} store")
    first = timed("first publish")
    rerun = timed("no-change rerun")
    page = source / "docs" / "section-3" / "page-3.md"
    page.write_text(page.read_text() + "\nOne more sentence.\n")
    publish_directory(server, "bench", source, message="change one page")
    changed = timed("one page changed")
    failed = 0
    for label, seconds, target in (
        ("rerun", rerun, RERUN_TARGET),
        ("one page changed", changed, CHANGE_TARGET),
    ):
        ratio = seconds / first
        failed += ratio > target
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(f"{label} / first = {ratio:.1%} (target <= {target:.0%}): {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
