"""Real Prometheus, Alertmanager, blackbox exporter and monitor on loopback, for tests and bench.

`monitoring_stack` starts the three Debian binaries from the same specs and
config files `slipway up` uses, on free ports in a directory of its own, and
the monitor app in a uvicorn thread. `WebhookReceiver` and `SmtpInbox` are
the people's end: a real HTTP server and a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import contextlib
import email
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from blocks.monitoring import MonitoringSettings
from deployments.monitor import build_app
from deployments.monitor_metrics import PlatformMetrics
from deployments.monitoring import MonitoringBinaries, monitoring_specs
from slipway.home import Ports
from tasks.monitoring.config import write_configs
from tasks.monitoring.layout import MonitoringLayout
from testkit.parts import missing_part
from testkit.platform import free_port

FAST = MonitoringSettings(
    scrape_interval_seconds=1,
    evaluation_interval_seconds=1,
    down_for_seconds=2,
    error_ratio_for_seconds=1,
    rate_window_seconds=4,
    group_wait_seconds=0,
    analysis_window_seconds=8,
    analysis_interval_seconds=1,
)
"""Short intervals, so an alert fires in seconds."""


def require_binaries() -> MonitoringBinaries:
    """Debian's monitoring binaries; skip without them, but fail under CI."""
    binaries = MonitoringBinaries.find()
    if binaries.missing():
        missing_part(
            f"not installed: {', '.join(binaries.missing())}", fix="run `make system` as root"
        )
    return binaries


@dataclass
class Stack:
    """The running parts and where they are."""

    layout: MonitoringLayout
    settings: MonitoringSettings
    metrics: PlatformMetrics
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Prometheus' instant query result for ``promql``."""
        response = httpx.get(
            f"{self.layout.prometheus_url}/api/v1/query",
            params={"query": promql},
            auth=self.layout.basic_auth(),
            timeout=5,
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result


def _wait_http(
    url: str,
    process: subprocess.Popen[bytes] | None,
    log: Path,
    auth: tuple[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, auth=auth, timeout=1).is_success:
                return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url} exited:\n{log.read_text()[-2000:]}")
        assert time.monotonic() < deadline, f"{url} not ready:\n{log.read_text()[-2000:]}"
        time.sleep(0.1)


@contextlib.contextmanager
def monitoring_stack(
    root: Path, *, api_url: str, settings: MonitoringSettings = FAST
) -> Iterator[Stack]:
    """Start the stack under ``root``; yields it running and stops it afterwards."""
    import uvicorn

    binaries = require_binaries()
    ports = Ports(
        prefect=free_port(),
        bridge=free_port(),
        prometheus=free_port(),
        alertmanager=free_port(),
        blackbox=free_port(),
        monitor=free_port(),
    )
    layout = MonitoringLayout(root / "monitoring", ports)
    write_configs(layout, settings, [])
    stack = Stack(layout, settings, PlatformMetrics())
    app = build_app(
        api_url=api_url,
        token=layout.receiver_token(),
        alertmanager_url=layout.alertmanager_url,
        metrics=stack.metrics,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=ports.monitor, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_http(f"{layout.monitor_url}/healthz", None, root / "none")
        for spec in monitoring_specs(layout, binaries):
            log = root / f"{spec.name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(spec.argv, stdout=out, stderr=subprocess.STDOUT)
            stack.processes.append(process)
            assert spec.health_url is not None
            _wait_http(spec.health_url, process, log, layout.basic_auth())
        yield stack
    finally:
        for process in stack.processes:
            process.terminate()
        for process in stack.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        server.should_exit = True
        thread.join(timeout=10)


class WebhookReceiver:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[tuple[float, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                length = int(self.headers.get("Content-Length", "0"))
                received.append((time.monotonic(), json.loads(self.rfile.read(length) or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the receiver."""
        self._server.shutdown()
        self._server.server_close()


class SmtpInbox:
    """aiosmtpd on loopback: a real SMTP server that keeps each message it is sent."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[float, Message]] = []
        inbox = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                inbox.append((time.monotonic(), email.message_from_bytes(envelope.content)))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def close(self) -> None:
        """Stop the SMTP server."""
        self._controller.stop()


SERVICE_CODE = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "version": os.environ["GIT_SHA"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print(self.requestline, flush=True)

print("serving", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
"""A service of the release contract in a few lines: /healthz answers 200."""


def run_service_container(
    client: Any, image: str, service: str, environment: str, port: int
) -> Any:
    """A container of the release contract (labels, host network, rotated log) serving on ``port``."""
    from tasks.containers import LOG_CONFIG
    from tasks.release import (
        LABEL_ENVIRONMENT,
        LABEL_IMAGE,
        LABEL_LIVE,
        LABEL_PORT,
        LABEL_SERVICE,
        LABEL_SHA,
    )

    sha = "0" * 40
    return client.containers.run(
        image,
        ["python3", "-c", SERVICE_CODE],
        name=f"{service}-{environment}-{sha[:12]}",
        detach=True,
        network_mode="host",
        environment={"PORT": str(port), "GIT_SHA": sha},
        labels={
            LABEL_SERVICE: service,
            LABEL_ENVIRONMENT: environment,
            LABEL_SHA: sha,
            LABEL_IMAGE: f"{image}@sha256:{'0' * 64}",
            LABEL_PORT: str(port),
            LABEL_LIVE: "true",
        },
        log_config=LOG_CONFIG,
    )
