"""How long publish-docs takes for a 200-page site: first publish against a no-change rerun.

The real flow runs on a temporary Prefect server against a local git server
and an artifact store (a local directory, or S3 on moto with ``--store s3``).
The site uses the material theme and links its pages to each other. Three
publishes are timed: the first (everything built and sent), the same commit
again (nothing to do), and a commit that changes one page (one page sent).
The server's start is not counted.

Target: the no-change rerun takes at most 20% of the first publish.

    python bench/docs.py [--pages 200] [--store local|s3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET = 0.20


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

    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-docs-") as scratch,
        prefect_test_harness(server_startup_timeout=180),
    ):
        register_block_types()
        return run(Path(scratch), args.pages, args.store)


def run(scratch: Path, pages: int, kind: str) -> int:
    from blocks import ALL_BLOCKS, DEFAULT_DOCUMENT, ArtifactStore, GitServer, S3Connection
    from flows.publish_docs import publish_docs
    from slipway.home import Ports, SlipwayHome
    from tasks.catalog import Catalog, CatalogEntry
    from tasks.git import create_repository, publish_directory, repository_url

    home = SlipwayHome(scratch / "home")
    home.ensure()
    for block_type in ALL_BLOCKS:
        if block_type is not S3Connection:
            block_type.local_default(home, Ports()).save(DEFAULT_DOCUMENT, overwrite=True)
    moto = None
    if kind == "s3":
        import logging

        from moto.server import ThreadedMotoServer

        from tasks.storage import S3Store

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        s3 = S3Connection(
            endpoint_url=f"http://{host}:{port}",
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
        result = publish_docs(service="bench")
        elapsed = time.perf_counter() - start
        sent = len(result.live.uploaded) if result.live else 0
        copied = len(result.version_copy.uploaded) if result.version_copy else 0
        print(
            f"{label:<22} {elapsed:7.2f} s   site files sent {sent:4d}   version copy {copied:4d}"
        )
        return elapsed

    try:
        print(f"publish-docs, {pages} pages, {kind} store")
        first = timed("first publish")
        rerun = timed("no-change rerun")
        page = source / "docs" / "section-3" / "page-3.md"
        page.write_text(page.read_text() + "\nOne more sentence.\n")
        publish_directory(server, "bench", source, message="change one page")
        timed("one page changed")
    finally:
        if moto is not None:
            moto.stop()
    ratio = rerun / first
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"rerun / first = {ratio:.1%} (target <= {TARGET:.0%}): {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
