"""The docs portal: the catalog's services with their docs and freshness, seen in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from blocks import ArtifactStore, GitServer
from deployments.docs_site import CommitInfo, GitDirectory, freshness, make_server
from flows.publish_docs import publish_docs
from slipway.process import run
from tasks.storage import open_store
from tasks.techdocs import DocsMetadata, PublishInfo
from tests.conftest import Platform, free_port
from tests.flows.docs_helpers import make_service, render_template_service

REPO = Path(__file__).resolve().parents[2]

# Loopback only: every other host name resolves to nothing.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1400,900",
)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once with a fresh profile; returns what it printed on stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make setup` as root")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    done = run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        timeout=90,
        hint="run Chromium by hand with the same flags to see why",
    )
    return done.stdout


class Rows(HTMLParser):
    """The portal's service rows, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.links: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-service" in values:
            self._current = values["data-service"]
            self.rows[self._current] = values
        elif tag == "a" and "docs-link" in values.get("class", "") and self._current:
            self.links[self._current] = values["href"]


@pytest.fixture(scope="module")
def template_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_template_service(tmp_path_factory.mktemp("template") / "svc")


@pytest.fixture
def portal(platform: Platform, tmp_path: Path) -> Iterator[str]:
    """The portal over the platform's store and catalog, on a free loopback port."""
    store = open_store(ArtifactStore.load_default())
    directory = GitDirectory(GitServer.load_default())
    server: ThreadingHTTPServer = make_server(
        store, free_port(), directory=directory, stale_after=timedelta(days=7)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_portal_in_chromium_lists_services_with_docs_links_and_flags_stale_and_missing(
    platform: Platform, portal: str, template_service: Path, tmp_path: Path
) -> None:
    source = template_service
    make_service("orders", source, tmp_path / "work", description="Takes orders.")
    publish_docs(service="orders")
    month_ago = datetime.now(UTC) - timedelta(days=30)
    stale = make_service("billing", source, tmp_path / "work", when=month_ago)
    publish_docs(service="billing")
    stale.commit(lambda t: (t / "README.md").write_text("# billing\n\nNew code.\n"), "code only")
    make_service("no-docs", None, tmp_path / "work", owner="group:ops")
    assert httpx.get(f"{portal}/healthz").text == "ok\n"

    screenshot = tmp_path / "portal.png"
    chromium(tmp_path, f"--screenshot={screenshot}", f"{portal}/")
    dom = chromium(tmp_path, "--dump-dom", f"{portal}/")

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a rendered table, not a blank page
    parsed = Rows()
    parsed.feed(dom)
    assert set(parsed.rows) == {"orders", "billing", "no-docs"}
    assert parsed.rows["orders"]["data-freshness"] == "fresh"
    assert parsed.rows["orders"]["data-flagged"] == "false"
    assert parsed.rows["billing"]["data-freshness"] == "stale"
    assert parsed.rows["billing"]["data-flagged"] == "true"
    assert parsed.rows["no-docs"]["data-freshness"] == "missing"
    assert parsed.rows["no-docs"]["data-flagged"] == "true"
    assert parsed.links["orders"] == "/default/component/orders/"
    assert "no-docs" not in parsed.links
    for text in ("Takes orders.", "group:docs", "group:ops", "no mkdocs.yml", "30 days older"):
        assert text in dom
    assert "3 services, 2 flagged" in dom

    # The docs link leads to the published site, served by the portal.
    site = chromium(tmp_path, "--dump-dom", f"{portal}{parsed.links['orders']}")
    assert "template-svc" in site and "How to use the service." not in site  # home page
    guide = httpx.get(f"{portal}/default/component/orders/guide/")
    assert guide.status_code == 200 and "How to use the service." in guide.text


def test_index_reflects_a_publish_at_once_and_refuses_paths_outside_the_docs(
    platform: Platform, portal: str, template_service: Path, tmp_path: Path
) -> None:
    make_service("inventory", template_service, tmp_path / "work")
    assert 'data-freshness="missing"' in httpx.get(f"{portal}/").text

    publish_docs(service="inventory")

    page = httpx.get(f"{portal}/").text
    assert 'data-service="inventory" data-freshness="fresh"' in page
    assert httpx.get(f"{portal}/default/component/nothing/").status_code == 404
    assert httpx.get(f"{portal}/a/%2E%2E/%2E%2E/etc/passwd").status_code == 400


def _docs(commit: str, committed: datetime) -> DocsMetadata:
    info = PublishInfo(
        service="s",
        commit=commit,
        ref="main",
        version=commit,
        commit_timestamp=int(committed.timestamp() * 1000),
        build_key="k",
    )
    return DocsMetadata(
        site_name="s",
        build_timestamp=int(committed.timestamp() * 1000),
        files=("index.html",),
        etag=commit,
        slipway=info,
    )


@pytest.mark.parametrize(
    ("lag_days", "expected", "flagged"),
    [(0, "fresh", False), (3, "behind", False), (8, "stale", True)],
)
def test_freshness_flags_docs_older_than_the_latest_commit_by_more_than_n_days(
    lag_days: int, expected: str, flagged: bool
) -> None:
    then = datetime(2025, 1, 1, tzinfo=UTC)
    latest = CommitInfo(
        sha="b" * 40 if lag_days else "a" * 40,
        committed_at=then + timedelta(days=lag_days),
        has_docs=True,
    )
    state, is_flagged, _ = freshness(_docs("a" * 40, then), latest, stale_after=timedelta(days=7))
    assert (state, is_flagged) == (expected, flagged)


def test_a_service_never_published_is_flagged_missing_with_the_reason() -> None:
    latest = CommitInfo(sha="a" * 40, committed_at=datetime.now(UTC), has_docs=True)
    state, flagged, note = freshness(None, latest, stale_after=timedelta(days=7))
    assert (state, flagged) == ("missing", True) and "publish-docs" in note


def test_portal_process_starts_as_slipway_up_runs_it_and_lists_the_catalog(
    platform: Platform, prefect_server: str, template_service: Path, tmp_path: Path
) -> None:
    from deployments.components import docs_spec
    from slipway.home import Ports

    make_service("checkout", template_service, tmp_path / "work")
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "docs.log").open("w")
    process = subprocess.Popen(
        docs_spec(Ports(docs=port)).argv, env=env, cwd=REPO, stdout=log, stderr=log
    )
    try:
        page = None
        deadline = time.monotonic() + 90
        while page is None and time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            except httpx.TransportError:
                time.sleep(0.3)
        assert page is not None, (tmp_path / "docs.log").read_text()
        assert page.status_code == 200
        assert 'data-service="checkout" data-freshness="missing"' in page.text
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
