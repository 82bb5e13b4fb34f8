"""The service portal, in real headless Chromium and over HTTP, on a platform with history.

One portal serves the whole module (`portal_world` builds what it shows).
Each page is opened in Chromium through Playwright, checked for what a
person sees, and kept as a screenshot under ``test-artifacts/portal/``
(``$SLIPWAY_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import expect
from prefect import get_client
from starlette.applications import Starlette

from blocks import ArtifactStore, GitServer
from deployments.portal import build_app
from deployments.portal.headers import DOCS_CSP, PORTAL_CSP
from deployments.portal.health import HealthBoard
from deployments.portal.sources import CatalogCache, PortalSources
from flows.insights import evaluate_service
from tasks.monitoring.view import NoMonitoring
from tasks.storage import ObjectStore, open_store
from tests.conftest import configure_platform, free_port
from tests.deployments.portal_world import (
    DEV_SHA,
    HOSTILE,
    MARK,
    SCAN_SHA,
    World,
    build_world,
    healthy_service,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SLIPWAY_TEST_ARTIFACTS", REPO / "test-artifacts")) / "portal"
CHROMIUM = "/usr/bin/chromium"
# Loopback only: every other host name resolves to nothing.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@dataclass(frozen=True)
class Portal:
    url: str
    world: World
    store: ObjectStore


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def portal(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    root = tmp_path_factory.mktemp("portal")
    with (
        pytest.MonkeyPatch.context() as patch,
        healthy_service(DEV_SHA) as port,
        get_client(sync_client=True) as client,
    ):
        platform = configure_platform(root)
        patch.setenv("SLIPWAY_HOME", str(platform.home.root))
        server = GitServer.load_default()
        store = open_store(ArtifactStore.load_default())
        world = build_world(server, store, root, port)
        evaluate_service("wallet-api")  # the real flow: DORA and scorecard, kept in the store
        sources = PortalSources(
            catalog=CatalogCache(server),
            store=store,
            client=client,
            monitoring=NoMonitoring(),
            ui_url="http://127.0.0.1:4200",
            bind_address="127.0.0.1",
            stale_after=timedelta(days=7),
        )
        with serve(build_app(sources, health=HealthBoard(interval=0.5))) as url:
            deadline = time.monotonic() + 30
            while "dev: up" not in httpx.get(f"{url}/").text:
                assert time.monotonic() < deadline, "the first health round never came"
                time.sleep(0.2)
            yield Portal(url, world, store)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail("chromium is not installed: run `make system` as root")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(90_000)  # a shared 2-core machine can be slow; never flaky
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def assert_no_script_ran(page: Any) -> None:
    assert page.title() != "pwned" and not page.dialogs


def test_home_lists_services_with_owner_lifecycle_level_and_health_and_filters(
    portal: Portal, page: Any
) -> None:
    page.goto(f"{portal.url}/")
    rows = page.locator("table.services tbody tr[data-service]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.service)")) == [
        "ghost",
        "invoicing",
        "wallet-api",
    ]
    payments = page.locator('tr[data-service="wallet-api"]')
    assert payments.get_attribute("data-health") == "down"  # prod does not answer
    assert "dev: up" in payments.inner_text() and "prod: down" in payments.inner_text()
    assert "production" in payments.inner_text() and "system:shop" in payments.inner_text()
    assert payments.get_attribute("data-level") in ("none", "bronze", "silver", "gold")
    assert HOSTILE.split("<img")[0] in page.inner_text("body")  # shown as text
    screenshot(page, "home")
    assert_no_script_ran(page)

    # The filter is a plain form: it works without script, and the URL keeps it.
    page.select_option("select[name=owner]", "group:ghosts")
    page.click("form.filters button")
    assert "owner=group%3Aghosts" in page.url
    names = page.locator("tr[data-service]").evaluate_all("rs => rs.map(r => r.dataset.service)")
    assert names == ["ghost"]
    by_system = httpx.get(f"{portal.url}/", params={"system": "system:shop"}).text
    assert 'data-service="wallet-api"' in by_system and 'data-service="invoicing"' not in by_system
    by_level = httpx.get(f"{portal.url}/", params={"level": "gold"}).text
    assert "No service matches." in by_level


def test_service_page_shows_environments_history_findings_drift_dora_and_scorecard(
    portal: Portal, page: Any
) -> None:
    page.goto(f"{portal.url}/services/wallet-api")
    assert "Moves money." in page.inner_text("p.description")
    envs = {
        r.get_attribute("data-environment"): r
        for r in page.locator("table.environments tbody tr").all()
    }
    assert list(envs) == ["dev", "prod", "preview-fix-login"]  # previews too
    dev = envs["dev"].inner_text()
    assert envs["dev"].get_attribute("data-health") == "up"
    assert DEV_SHA[:12] in dev and f"reports {DEV_SHA[:12]}" in dev
    assert f"http://127.0.0.1:{portal.world.healthy_port}/" in dev
    prod = envs["prod"]
    assert prod.get_attribute("data-health") == "down"
    assert "b" * 12 in prod.inner_text()  # the last good release runs, not the failed attempt
    assert "failed" in prod.inner_text()  # ... and the failed attempt is the last deploy
    assert "preview" in envs["preview-fix-login"].inner_text()
    assert "expires" in envs["preview-fix-login"].inner_text()

    history = page.locator("table.history tbody tr")
    assert history.count() == 3
    counts = {
        c.get_attribute("data-severity"): c.inner_text()
        for c in page.locator("table.counts td").all()
    }
    assert (counts["critical"], counts["high"], counts["medium"]) == ("1", "2", "3")
    assert page.locator("details.severity-critical").get_attribute("open") is not None
    sarif = page.locator("a.sarif").get_attribute("href")
    assert sarif == f"/services/wallet-api/scans/{SCAN_SHA}/scan.sarif"
    drift = page.locator("table.drift").inner_text()
    assert "OutOfSync" in drift and "container stopped" in drift

    dora = page.locator("table.dora tbody tr[data-days]")
    assert dora.evaluate_all("rs => rs.map(r => r.dataset.days)") == ["7", "30", "90"]
    month = page.locator('table.dora tr[data-days="30"]').inner_text()
    assert "1 of 2" in month  # one promotion to prod went through, one attempt failed
    assert "50%" in month  # change failure rate: the failed attempt of two
    checks = {
        r.get_attribute("data-check"): r.get_attribute("data-status")
        for r in page.locator("table.scorecard tbody tr").all()
    }
    assert checks["owner-is-a-team"] == "passed"
    assert checks["no-high-findings"] == "failed"
    assert checks["no-drift"] == "failed"
    assert checks["alert-rules"] == "not-configured"
    assert "monitoring not configured" in page.inner_text("#alerts-status").lower()
    screenshot(page, "service")
    assert_no_script_ran(page)

    response = httpx.get(f"{portal.url}{sarif}")
    assert response.status_code == 200 and response.json()["version"] == "2.1.0"
    assert response.headers["content-type"].startswith("application/sarif+json")


def test_history_pages_through_every_release(portal: Portal) -> None:
    first = httpx.get(f"{portal.url}/services/invoicing").text
    assert first.count('data-outcome="succeeded"') == 100
    assert "/services/invoicing/history?page=1" in first
    older = httpx.get(f"{portal.url}/services/invoicing/history", params={"page": 1}).text
    assert older.count('data-outcome="succeeded"') == 1 and "?page=0" in older


def test_team_page_shows_members_approvers_services_and_team_dora(
    portal: Portal, page: Any
) -> None:
    page.goto(f"{portal.url}/teams/payments")
    assert page.inner_text("#members") == "alice, bob"
    assert page.inner_text("#approvers") == "alice"
    names = page.locator("tr[data-service]").evaluate_all("rs => rs.map(r => r.dataset.service)")
    assert names == ["invoicing", "wallet-api"]
    assert page.locator('table.dora[data-subject="group:payments"] tr[data-days]').count() == 3
    screenshot(page, "team")
    assert_no_script_ran(page)

    ghosts = httpx.get(f"{portal.url}/teams/ghosts").text
    assert "The catalog has no Group ghosts" in ghosts
    assert "slipway catalog group ghosts" in ghosts
    assert httpx.get(f"{portal.url}/teams/nobody").status_code == 404
    teams = httpx.get(f"{portal.url}/teams").text
    assert 'data-team="ghosts"' in teams and "not in the catalog" in teams


def test_a_docs_page_runs_its_script_only_in_a_sandbox_that_cannot_reach_the_portal(
    portal: Portal, page: Any
) -> None:
    page.goto(f"{portal.url}/docs")
    link = page.locator('tr[data-service="wallet-api"] a.docs-link').get_attribute("href")
    assert link == "/default/component/wallet-api/"
    page.goto(f"{portal.url}{link}")
    # A locator's assertion runs in Playwright's own world, where the page's
    # CSP (no eval) does not apply; wait_for_function would need eval.
    expect(page.locator("#verdict")).not_to_have_text("waiting", timeout=30_000)
    verdict = page.inner_text("#verdict").split()
    # The docs' own script ran, but in an opaque origin of its own: the
    # portal's cookies, storage and pages are out of its reach.
    assert verdict[0] == "opaque-origin"
    assert {"cookie-blocked", "storage-blocked", "portal-unreadable"} <= set(verdict), verdict
    assert "How to use it." in page.inner_text("body")
    screenshot(page, "docs")

    # The portal itself, opened afterwards, is untouched.
    page.goto(f"{portal.url}/services/wallet-api")
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("window.localStorage.length") == 0


def test_every_response_carries_a_strict_csp_and_nosniff(portal: Portal) -> None:
    pages = [
        "/",
        "/?owner=%3Cscript%3E",
        "/services/wallet-api",
        "/services/wallet-api/history?page=1",
        f"/services/wallet-api/scans/{SCAN_SHA}/scan.sarif",
        "/services/nothing",
        "/services/Not_A_Name",
        "/services/wallet-api/scans/zz/scan.sarif",
        "/teams",
        "/teams/payments",
        "/teams/nobody",
        "/docs",
        "/static/portal.css",
        "/healthz",
        "/no/such/page",
    ]
    docs = [
        "/default/component/wallet-api/",
        "/default/component/wallet-api/techdocs_metadata.json",
        "/default/component/nothing/",
        "/default/component/wallet-api",
    ]
    for path in pages + docs:
        response = httpx.get(f"{portal.url}{path}")
        assert response.headers["x-content-type-options"] == "nosniff", path
        expected = DOCS_CSP if path in docs else PORTAL_CSP
        assert response.headers["content-security-policy"] == expected, path
    assert "script-src" not in PORTAL_CSP and "default-src 'none'" in PORTAL_CSP
    assert DOCS_CSP.startswith("sandbox ") and "allow-same-origin" not in DOCS_CSP
    assert httpx.get(f"{portal.url}/services/nothing").status_code == 404
    assert httpx.get(f"{portal.url}/services/wallet-api/scans/zz/scan.sarif").status_code == 400
    assert httpx.get(f"{portal.url}/default/component/nothing/").status_code == 404
    assert httpx.get(f"{portal.url}/default/a/%2E%2E/%2E%2E/etc/passwd").status_code == 404
    assert httpx.get(f"{portal.url}/default/component/a/%2E%2E/x").status_code == 400
    assert httpx.post(f"{portal.url}/").status_code == 405  # nothing on the portal changes state


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/services/wallet-api",
        "/teams",
        "/teams/payments",
        "/docs",
        "/?owner=" + HOSTILE,
        "/teams/" + HOSTILE,
    ],
)
def test_every_page_escapes_catalog_and_payload_text(portal: Portal, path: str) -> None:
    html = httpx.get(f"{portal.url}{path}").text
    assert MARK not in html and "<img src=x" not in html
    assert 'href="javascript:' not in html


def test_hostile_texts_show_as_text_on_the_service_and_team_pages(portal: Portal) -> None:
    service = httpx.get(f"{portal.url}/services/wallet-api").text
    escaped = "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"
    # description, a release's pusher and detail, a finding's message and file, drift reasons
    assert service.count(escaped) >= 6
    assert 'href="javascript:' not in service  # a finding's help_uri is not a link
    team = httpx.get(f"{portal.url}/teams/payments").text
    assert team.count(escaped) == 3  # title, description, and a service's description


def test_portal_process_starts_as_slipway_up_runs_it(
    portal: Portal, prefect_server: str, tmp_path: Path
) -> None:
    from deployments.components import docs_spec
    from slipway.home import Ports

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": prefect_server}
    log = (tmp_path / "portal.log").open("w")
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
        assert page is not None, (tmp_path / "portal.log").read_text()
        assert page.status_code == 200
        assert 'data-service="wallet-api"' in page.text
        assert page.headers["content-security-policy"] == PORTAL_CSP
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
