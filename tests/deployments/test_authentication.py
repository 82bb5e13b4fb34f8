"""Authentication everywhere, on a real `slipway up` of a new home: Prefect, its UI, the registry."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_AUTH_STRING
from tests.deployments.conftest import (
    REPO,
    SLIPWAY,
    Up,
    free_port,
    free_ports,
    processes_of_home,
    slipway_env,
)
from tests.deployments.test_scale_out import _probe_repository

HAS_REGISTRY = shutil.which("docker-registry") is not None
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """A new home whose auth string `up` generates itself."""
    root = tmp_path_factory.mktemp("auth")
    ports = free_ports()
    running = Up(root / "home", ports, slipway_env(), preset_auth=False)
    try:
        running.start()
        yield running
    finally:
        running.kill()


def test_a_new_home_gets_a_generated_auth_string_in_a_file_of_its_owner_only(up: Up) -> None:
    user, _, password = up.auth_string.partition(":")
    assert user == "slipway" and len(password) >= 40
    assert up.auth_string != API_AUTH_STRING
    assert stat.S_IMODE(up.auth_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(up.auth_file.parent.stat().st_mode) == 0o700
    assert any("generated the Prefect API's auth string" in line for line in up.output)


def test_an_unauthenticated_api_call_is_refused(up: Up) -> None:
    body = {"limit": 5}
    assert httpx.post(f"{up.api_url}/block_documents/filter", json=body).status_code == 401
    assert httpx.post(f"{up.api_url}/flows/filter", json=body).status_code == 401
    wrong = httpx.BasicAuth("slipway", "not-the-password")
    assert httpx.post(f"{up.api_url}/flows/filter", json=body, auth=wrong).status_code == 401
    session = httpx.BasicAuth(*API_AUTH_STRING.split(":", 1))  # another home's string
    assert httpx.post(f"{up.api_url}/flows/filter", json=body, auth=session).status_code == 401
    right = httpx.BasicAuth(*up.auth_string.split(":", 1))
    assert httpx.post(f"{up.api_url}/flows/filter", json=body, auth=right).status_code == 200
    # Only the health probe answers without it: it says nothing but "up".
    assert httpx.get(f"{up.api_url}/health").json() is True


def test_the_cli_and_every_component_use_the_homes_auth_string(up: Up) -> None:
    status = up.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert " served" in status.stdout  # read from Prefect's API, authenticated
    listed = up.cli("catalog", "list")
    assert listed.returncode == 0, listed.stderr
    assert "The catalog is empty" in listed.stdout


def test_the_auth_string_is_never_logged_or_printed(up: Up) -> None:
    password = up.auth_string.partition(":")[2]
    assert password not in "".join(up.output)
    for log in (up.home / "logs").glob("*.log"):
        assert password not in log.read_text(errors="replace"), log.name
    assert password not in (up.home / "run" / "up.json").read_text()


def test_browsers_may_call_the_api_from_the_uis_own_origin_only(up: Up) -> None:
    def preflight(origin: str) -> httpx.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return httpx.options(f"{up.api_url}/flows/filter", headers=headers)

    own = f"http://127.0.0.1:{up.ports['prefect']}"
    assert preflight(own).headers.get("access-control-allow-origin") == own
    for origin in ("http://evil.example", f"http://127.0.0.1:{up.ports['docs']}"):
        foreign = preflight(origin)  # the portal's pages are services' own: untrusted
        assert "access-control-allow-origin" not in foreign.headers, origin
        assert foreign.status_code == 400


def test_the_portal_serves_published_docs_and_nothing_else_of_the_store(up: Up) -> None:
    store = up.home / "artifacts"
    (store / "techdocs" / "default" / "component" / "svc").mkdir(parents=True)
    (store / "techdocs" / "default" / "component" / "svc" / "index.html").write_text("docs")
    (store / "releases").mkdir()
    (store / "releases" / "record.json").write_text("not for the portal")
    portal = f"http://127.0.0.1:{up.ports['docs']}"
    assert httpx.get(f"{portal}/default/component/svc/").text == "docs"
    for path in (
        "/../releases/record.json",
        "/%2E%2E/releases/record.json",
        "/releases/record.json",
    ):
        answer = httpx.get(portal + path)
        assert answer.status_code in (400, 404), path
        assert "not for the portal" not in answer.text


def test_the_ui_asks_for_the_auth_string_and_lets_in_whoever_has_it(up: Up) -> None:
    ui = up.api_url.removesuffix("/api")
    assert httpx.get(f"{ui}/ui-settings").json()["auth"] == "BASIC"
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            loopback = "http://127.0.0.1:"  # the UI links to the internet: nothing leaves
            page.route(
                "**/*",
                lambda r: r.continue_() if r.request.url.startswith(loopback) else r.abort(),
            )
            page.goto(f"{ui}/", wait_until="networkidle")
            page.wait_for_url("**/login**")
            page.fill("input[type=password]", "slipway:wrong")
            page.click("button:has-text('Login')")
            page.wait_for_selector("text=Invalid credentials")
            page.fill("input[type=password]", up.auth_string)
            page.click("button:has-text('Login')")
            page.wait_for_url("**/dashboard**")
            page.goto(f"{ui}/deployments", wait_until="networkidle")
            page.wait_for_selector("text=platform-check")
        finally:
            browser.close()


@pytest.mark.skipif(not HAS_REGISTRY, reason="docker-registry is not installed")
def test_the_registry_requires_the_blocks_login_and_deletes_nothing(up: Up) -> None:
    v2 = f"http://127.0.0.1:{up.ports['registry']}/v2/"
    assert httpx.get(v2).status_code == 401
    block = "from blocks import ContainerRegistry as R; b = R.load('default'); "
    user = up.python(block + "print(b.username)")
    password = up.python(block + "print(b.password.get_secret_value())")
    assert httpx.get(v2, auth=(user, password)).status_code == 200
    assert httpx.get(v2, auth=(user, password + "x")).status_code == 401
    # With deletion on, an unknown manifest would be a 404; off, every delete is refused.
    manifest = f"{v2}some-service/manifests/sha256:{'0' * 64}"
    assert httpx.delete(manifest, auth=(user, password)).status_code == 405
    htpasswd = up.home / "run" / "registry.htpasswd"
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600
    assert password not in htpasswd.read_text()  # bcrypt, never the password itself


def test_a_worker_host_without_its_servers_auth_string_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in slipway_env().items() if k != "PREFECT_API_AUTH_STRING"}
    result = subprocess.run(
        [*SLIPWAY, "--home", str(tmp_path / "w"), "up", "--role", "worker", "--server", up_url()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "a worker host needs the auth string of its Prefect server" in result.stderr
    assert "keys/prefect-api-auth" in result.stderr


def up_url() -> str:
    """A server address nobody answers at: the worker must fail before trying it."""
    return f"http://127.0.0.1:{free_port()}"


def test_a_server_reached_beyond_loopback_needs_a_strong_auth_string(tmp_path: Path) -> None:
    repository = _probe_repository(tmp_path / "platform")
    home = tmp_path / "server"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "prefect-api-auth").write_text("slipway:short\n")
    ports = [x for n, port in free_ports().items() for x in (f"--{n}-port", str(port))]
    public = ["--public-url", "https://prefect.example.com", "--project", str(repository)]
    result = subprocess.run(
        [*SLIPWAY, "--home", str(home), "up", "--role", "server", *ports, *public],
        cwd=REPO,
        env=slipway_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "too weak for a server reached beyond loopback" in result.stderr
    assert "at least 24 characters" in result.stderr
    assert not processes_of_home(home)
