"""Fixtures every flow test shares: a real Prefect server, and a platform configured on it.

``prefect_server`` is one temporary Prefect server (SQLite) for the whole
session, started by Prefect's own test harness, requiring `API_AUTH_STRING`
like every server of the tests. ``platform`` writes the
``default`` document of every Slipway block, pointing at a fresh data
directory under ``tmp_path``, so each test gets its own git root, artifact
store and Terraform state while sharing the server.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testkit.parts import BASE_IMAGE, in_ci, missing_part
from testkit.platform import Platform, configure_platform, free_port

__all__ = [
    "BASE_IMAGE",
    "Platform",
    "configure_platform",
    "free_port",
    "in_ci",
    "missing_part",
]

# Only loopback is reachable here, and nothing may try another address:
# Prefect's test server would otherwise send telemetry off the machine.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

API_AUTH_STRING = f"slipway-tests:{secrets.token_urlsafe(32)}"
"""The Prefect API auth string of the session: every server the tests start requires it
(the test harness's, and each `slipway up`'s home gets it as its own), and every client sends it.

Set here, before Prefect is imported, so its settings hold it from the start."""
os.environ["PREFECT_SERVER_API_AUTH_STRING"] = API_AUTH_STRING
os.environ["PREFECT_API_AUTH_STRING"] = API_AUTH_STRING


def authenticated_url(url: str, auth: str = API_AUTH_STRING) -> str:
    """`testkit.platform.authenticated_url`, with the session's auth string by default."""
    from testkit.platform import authenticated_url as with_user_info

    return with_user_info(url, auth)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, a skip from anywhere (a marker, a plugin, a forgotten `pytest.skip`) fails.

    CI's summary must read 0 skipped: a part it lacks is a broken CI machine.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must not skip: {reason}"


LOOPBACK_SECRET = "TOPSECRET-loopback-7f3a"
"""What `loopback_listener` answers: a stand-in for a platform secret on a loopback port."""


@dataclass
class Listener:
    """A real HTTP server on 127.0.0.1 only, standing in for a platform service."""

    port: int
    hits: list[str] = field(default_factory=list)
    """The paths anyone asked for; an attack that reached it leaves one here."""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def loopback_listener() -> Iterator[Listener]:
    """Answers every GET with `LOOPBACK_SECRET` and records it, bound to the host's loopback."""
    found = Listener(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.hits.append(self.path)
            body = LOOPBACK_SECRET.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real, temporary Prefect server requiring `API_AUTH_STRING`; yields its API URL.

    The URL carries the auth string (`authenticated_url`), so a test's own
    httpx requests authenticate; Prefect's client takes it from the environment.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from blocks import register_block_types

    with prefect_test_harness(server_startup_timeout=120):
        register_block_types()
        yield authenticated_url(str(PREFECT_API_URL.value()))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One in-memory S3 server (moto) on loopback for the session; tests use buckets of their own."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def platform(prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """Default block documents for a new home under ``tmp_path``, saved on the test server."""
    configured = configure_platform(tmp_path)
    monkeypatch.setenv("SLIPWAY_HOME", str(configured.home.root))
    for name, port in configured.ports.as_dict().items():
        if name != "prefect":
            monkeypatch.setenv(f"SLIPWAY_{name.upper()}_PORT", str(port))
    return configured
