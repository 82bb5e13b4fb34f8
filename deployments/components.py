"""The processes that `slipway up` runs, and the environment they share.

Each component is a plain child process with its own process group, its own
log file under ``<home>/logs/`` and a health URL. Every child's environment
carries ``SLIPWAY_SUPERVISOR=<marker>``, which is how `slipway down` finds
stray grandchildren after a crash.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import PortInUse
from slipway.home import HOST, Ports, SlipwayHome

__all__ = [
    "REGISTRY_HINT",
    "ProcessSpec",
    "bridge_spec",
    "check_port_free",
    "child_env",
    "docs_spec",
    "prefect_server_spec",
    "registry_binary",
    "registry_spec",
    "serve_spec",
]

REGISTRY_HINT = "install Debian's registry package: `apt-get install docker-registry`"


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one component and how to tell that it is healthy."""

    name: str
    """Component name, as `slipway status` shows it."""
    argv: tuple[str, ...]
    """The command; never run through a shell."""
    url: str
    """Where users reach it."""
    health_url: str | None
    """Probed with GET until it answers 2xx; None when the process itself is the check."""
    port: int | None = None
    """The loopback port it binds, checked to be free before it starts."""


def child_env(home: SlipwayHome, ports: Ports, marker: str) -> dict[str, str]:
    """The environment of every child: Prefect pointed at the embedded server."""
    env = dict(os.environ)
    api = ports.prefect_api_url
    env.update(
        {
            "SLIPWAY_HOME": str(home.root),
            "SLIPWAY_SUPERVISOR": marker,
            "SLIPWAY_PREFECT_PORT": str(ports.prefect),
            "SLIPWAY_BRIDGE_PORT": str(ports.bridge),
            "SLIPWAY_DOCS_PORT": str(ports.docs),
            "SLIPWAY_REGISTRY_PORT": str(ports.registry),
            "PREFECT_HOME": str(home.prefect_home),
            "PREFECT_API_URL": api,
            "PREFECT_UI_API_URL": api,
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(ports.prefect),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def prefect_server_spec(ports: Ports) -> ProcessSpec:
    """Prefect's API and UI; SQLite under PREFECT_HOME unless a database URL is set."""
    url = f"http://{HOST}:{ports.prefect}"
    argv = (sys.executable, "-m", "prefect", "server", "start", "--host", HOST)
    return ProcessSpec(
        name="prefect",
        argv=(*argv, "--port", str(ports.prefect)),
        url=url,
        health_url=f"{url}/api/health",
        port=ports.prefect,
    )


def registry_binary() -> str | None:
    """Debian's registry binary, when installed."""
    return shutil.which("docker-registry")


def registry_spec(home: SlipwayHome, ports: Ports, binary: str) -> ProcessSpec:
    """Debian's `docker-registry` with blobs under the home; writes its config file."""
    config = home.run / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {home.registry}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {HOST}:{ports.registry}\n"
    )
    return ProcessSpec(
        name="registry",
        argv=(binary, "serve", str(config)),
        url=f"{HOST}:{ports.registry}",
        health_url=f"http://{HOST}:{ports.registry}/v2/",
        port=ports.registry,
    )


def serve_spec(project_dir: Path) -> ProcessSpec:
    """The runner that serves every deployment of prefect.yaml."""
    return ProcessSpec(
        name="deployments",
        argv=(sys.executable, "-m", "deployments.serve", "--project", str(project_dir)),
        url=str(project_dir / "prefect.yaml"),
        health_url=None,
    )


def docs_spec(ports: Ports) -> ProcessSpec:
    """The docs portal over the artifact store."""
    url = f"http://{HOST}:{ports.docs}"
    return ProcessSpec(
        name="docs",
        argv=(sys.executable, "-m", "deployments.docs_site", "--port", str(ports.docs)),
        url=url,
        health_url=f"{url}/healthz",
        port=ports.docs,
    )


def bridge_spec(ports: Ports) -> ProcessSpec:
    """The webhook bridge: signed pushes in, Prefect events out."""
    url = f"http://{HOST}:{ports.bridge}"
    return ProcessSpec(
        name="bridge",
        argv=(sys.executable, "-m", "deployments.bridge", "--port", str(ports.bridge)),
        url=f"{url}/hooks/",
        health_url=f"{url}/healthz",
        port=ports.bridge,
    )


def check_port_free(name: str, port: int) -> None:
    """Refuse to start when another process holds the port, naming the fix."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"port {port} on {HOST}, needed by {name}, is already in use",
                hint=(
                    f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or move Slipway's "
                    f"{name} with SLIPWAY_{name.upper()}_PORT=<port> or `slipway up --{name}-port`"
                ),
            ) from e
