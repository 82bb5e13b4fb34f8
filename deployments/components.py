"""The processes that `slipway up` runs, and the environment they share.

Each component is a plain child process with its own process group, its own
log file under ``<home>/logs/`` and a health URL. Every child's environment
carries ``SLIPWAY_SUPERVISOR=<marker>``, which is how `slipway down` finds
stray grandchildren after a crash.

Which components run depends on the role of the host (`Role`): the embedded
default runs everything here, a server host runs Prefect (on SQLite or
PostgreSQL, `Database`) and the shared services, and a worker host runs only
Prefect's own process worker polling the ``slipway`` work pool.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import SecretStr

from deployments.database import DATABASE_ENV, Database, check_database
from deployments.registry_auth import RegistryLogin, write_registry_config
from slipway.api_auth import CLIENT_VARIABLE, SERVER_VARIABLE, ApiAuth
from slipway.errors import ConfigurationError, PortInUse
from slipway.home import HOST, Ports, SlipwayHome

__all__ = [
    "DATABASE_ENV",
    "REGISTRY_HINT",
    "ROLES",
    "Database",
    "ProcessSpec",
    "Role",
    "WorkerSettings",
    "bridge_spec",
    "check_database",
    "check_port_free",
    "child_env",
    "default_worker_name",
    "docs_spec",
    "prefect_server_spec",
    "registry_binary",
    "registry_spec",
    "run_starter_spec",
    "serve_spec",
    "server_api_url",
    "worker_spec",
]


REGISTRY_HINT = "install Debian's registry package: `apt-get install docker-registry`"

Role = Literal["embedded", "server", "worker", "all"]
"""What one `slipway up` runs: ``embedded`` (everything, flows served in-process),
``server`` (Prefect, the bridge, docs and registry; flows go to the work pool),
``worker`` (one Prefect process worker against a remote server) or ``all``
(a server and one worker on this host)."""

ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class WorkerSettings:
    """How the Prefect worker of a worker host runs."""

    api_url: str
    """The Prefect API it polls, e.g. ``http://10.0.0.5:4200/api``."""
    pool: str = "slipway"
    """The work pool; prefect.yaml's deployments target ``slipway``."""
    name: str | None = None
    """Worker name, unique per pool; default: host name and a digest of the home."""
    poll_seconds: float = 5.0
    """Seconds between two polls of the pool (``PREFECT_WORKER_QUERY_SECONDS``)."""
    limit: int | None = None
    """Flow runs it runs at once; None for no limit."""
    heartbeat_seconds: int = 30
    """Flow-run heartbeat interval; the server's crash detection counts on it."""


def server_api_url(raw: str) -> str:
    """A Prefect server address as its API URL: ``http://h:4200`` -> ``http://h:4200/api``.

    Raises:
        ConfigurationError: it is not an http(s) URL with a host.
    """
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{raw!r} is not the URL of a Prefect server",
            hint="pass --server http://HOST:4200 (the server host's `slipway status` shows it)",
        )
    return url if url.endswith("/api") else f"{url}/api"


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
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables added to the shared child environment for this process only."""
    secret_env: Mapping[str, SecretStr] = field(default_factory=dict)
    """Like `env`, for values that must not show in a repr or a log (database URLs)."""
    cwd: Path | None = None
    """Working directory; None for the data directory."""
    health_login: tuple[str, SecretStr] | None = None
    """User and password that the health probe sends, where the component requires a login."""
    stop_last: bool = False
    """Stopped after every other child: a server the others talk to while they shut down."""
    preload: tuple[str, ...] = ()
    """Modules a ``python -m`` child imports before it waits at the gate. Given, `up` imports
    them once itself and forks the child from there (`deployments.warm_start`)."""


_SERVER_CSRF = (
    "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED",
    "PREFECT_SERVER_CSRF_PROTECTION_ENABLED",
)
_CLIENT_CSRF = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"


def child_env(
    home: SlipwayHome, ports: Ports, marker: str, *, auth: ApiAuth, api_url: str | None = None
) -> dict[str, str]:
    """The environment of every child: Prefect pointed at this host's server or ``api_url``.

    Every child authenticates to Prefect with ``auth``. Database URLs and the
    server's own copy of the auth string are dropped: only the server's
    `ProcessSpec` carries those, so no flow run can print them from its environment.
    Clients of this host's own server ask it for no CSRF token unless the
    environment turns its CSRF protection on.
    """
    env = {k: v for k, v in os.environ.items() if k not in (*DATABASE_ENV, SERVER_VARIABLE)}
    api = api_url or ports.prefect_api_url
    # Our interpreter first: a worker starts flow runs as `python -m ...` (pool.FLOW_RUN_COMMAND).
    interpreter = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": os.pathsep.join([interpreter, *env.get("PATH", os.defpath).split(os.pathsep)]),
            "SLIPWAY_HOME": str(home.root),
            "SLIPWAY_SUPERVISOR": marker,
            **{f"SLIPWAY_{name.upper()}_PORT": str(port) for name, port in ports.as_dict().items()},
            "PREFECT_HOME": str(home.prefect_home),
            "PREFECT_API_URL": api,
            "PREFECT_UI_API_URL": api,
            CLIENT_VARIABLE: auth.value.get_secret_value(),
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(ports.prefect),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if api == ports.prefect_api_url and not any(name in env for name in _SERVER_CSRF):
        # Prefect's default: a token request per client, two at each run's start, saved.
        env.setdefault(_CLIENT_CSRF, "false")
    return env


def prefect_server_spec(
    ports: Ports,
    database: Database | None = None,
    *,
    auth: ApiAuth,
    durable_leases: bool = False,
    public_url: str | None = None,
) -> ProcessSpec:
    """Prefect's API and UI; SQLite under PREFECT_HOME unless a database is given.

    Every API request must carry ``auth`` (the UI asks for it), and browsers
    may call the API from the UI's own origins only (CORS).

    Args:
        ports: The loopback ports.
        database: PostgreSQL (or another SQLite file) instead of the default.
        auth: The API's auth string.
        durable_leases: Keep concurrency-slot leases in files under
            PREFECT_HOME instead of memory, so a server restart does not leak
            the slots that flow runs on worker hosts hold (scale-out roles).
        public_url: The address of a proxy in front of the server; the UI in
            users' browsers calls its API there instead of on loopback.

    Raises:
        ConfigurationError: ``public_url`` is given and ``auth`` is too weak for it.
    """
    url = f"http://{HOST}:{ports.prefect}"
    argv = (sys.executable, "-m", "deployments.prefect_server", "server", "start", "--host", HOST)
    secret = {SERVER_VARIABLE: auth.value}
    if database is not None:
        secret["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database.url
    env = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": _FILE_LEASES} if durable_leases else {}
    origins = [url, f"http://localhost:{ports.prefect}"]
    if public_url is not None:
        auth.require_strong("a server reached beyond loopback (--public-url)")
        env["PREFECT_UI_API_URL"] = f"{public_url}/api"
        parts = urlsplit(public_url)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    env["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"] = ",".join(origins)
    return ProcessSpec(
        name="prefect",
        argv=(*argv, "--port", str(ports.prefect)),
        url=url,
        health_url=f"{url}/api/health",
        port=ports.prefect,
        env=env,
        secret_env=secret,
        stop_last=True,
    )


_FILE_LEASES = "prefect.server.concurrency.lease_storage.filesystem"


def worker_spec(settings: WorkerSettings, home: SlipwayHome) -> ProcessSpec:
    """Prefect's own process worker, polling the pool of the server at ``settings.api_url``.

    Flow runs start in fresh directories under ``<home>/work`` (their TMPDIR),
    forked by the host's run starter (`run_starter_spec`), and run from the
    host's checkout of the pinned commit (`slipway.checkouts`).
    """
    name = settings.name or default_worker_name(home)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", settings.pool]
    argv += ["--name", name, "--type", "process"]
    if settings.limit is not None:
        argv += ["--limit", str(settings.limit)]
    work = home.root / "work"
    work.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        name="worker",
        argv=tuple(argv),
        url=f"{settings.api_url.removesuffix('/api')}/work-pools/work-pool/{settings.pool}",
        health_url=None,
        env=_worker_env(settings, home),
        cwd=work,
    )


def run_starter_spec(settings: WorkerSettings, home: SlipwayHome) -> ProcessSpec:
    """The warm interpreter that forks the worker's flow runs (`slipway.prefect_patches.warm_runs`).

    Same environment as the worker, so what it preloads is configured as a
    cold run's process would be; each run then gets its own environment.
    """
    socket = home.run / "run-starter.sock"
    return ProcessSpec(
        name="run-starter",
        argv=(sys.executable, "-m", "slipway.prefect_patches.warm_server", str(socket)),
        url=str(socket),
        health_url=None,
        env=_worker_env(settings, home),
        cwd=home.run,
    )


def _worker_env(settings: WorkerSettings, home: SlipwayHome) -> dict[str, str]:
    return {
        "PREFECT_API_URL": settings.api_url,
        "PREFECT_UI_API_URL": settings.api_url,
        "PREFECT_WORKER_QUERY_SECONDS": str(settings.poll_seconds),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.heartbeat_seconds),
        "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false",
        "TMPDIR": str(home.root / "work"),
        "SLIPWAY_WORKER_NAME": settings.name or default_worker_name(home),
        "SLIPWAY_RUN_STARTER": str(home.run / "run-starter.sock"),
    }


def default_worker_name(home: SlipwayHome) -> str:
    """``<host name>-<6 hex of the home path>``: stable across restarts, unique per home."""
    digest = hashlib.sha256(str(home.root).encode()).hexdigest()[:6]
    return f"{socket.gethostname()}-{digest}"


def registry_binary() -> str | None:
    """Debian's registry binary, when installed."""
    return shutil.which("docker-registry")


def registry_spec(
    home: SlipwayHome, ports: Ports, binary: str, login: RegistryLogin
) -> ProcessSpec:
    """Debian's `docker-registry` with blobs under the home, requiring ``login``, deletion off."""
    config = write_registry_config(home, ports, login)
    return ProcessSpec(
        name="registry",
        argv=(binary, "serve", str(config)),
        url=f"{HOST}:{ports.registry}",
        health_url=f"http://{HOST}:{ports.registry}/v2/",
        port=ports.registry,
        health_login=(login.username, login.password),
        stop_last=True,
    )


def serve_spec(project_dir: Path) -> ProcessSpec:
    """The runner that serves every deployment of prefect.yaml.

    Forked from `up` with Prefect's runner imported when the project is the
    checkout Slipway runs from: it registers a second sooner once the gate
    opens. Another checkout's flows may need other versions of the platform's
    modules than `up` holds, so its runner starts cold.
    """
    own = project_dir.resolve() == _CHECKOUT
    return ProcessSpec(
        name="deployments",
        argv=(sys.executable, "-m", "deployments.serve", "--project", str(project_dir)),
        url=str(project_dir / "prefect.yaml"),
        health_url=None,
        preload=_RUNNER_PRELOAD if own else (),
    )


_CHECKOUT = Path(__file__).resolve().parents[1]
"""The checkout these modules were imported from."""

_RUNNER_PRELOAD = (
    *("deployments.serve", "prefect.runner", "prefect.flows", "prefect.exceptions"),
    *("slipway.prefect_patches.forkserver", "tasks.monitoring.otlp", "blocks.monitoring"),
)
"""What the runner imports after the gate, before the flows (which `up` never imports)."""


def docs_spec(ports: Ports) -> ProcessSpec:
    """The service portal (services, teams, DORA, scorecards) and every service's docs."""
    url = f"http://{HOST}:{ports.docs}"
    return ProcessSpec(
        name="docs",
        argv=(sys.executable, "-m", "deployments.portal", "--port", str(ports.docs)),
        url=url,
        health_url=f"{url}/healthz",
        port=ports.docs,
        preload=(
            *("deployments.portal.__main__", "deployments.portal.app"),
            *("deployments.portal.sources", "tasks.monitoring.view", "tasks.storage", *_SERVES),
        ),
    )


def bridge_spec(ports: Ports, database: Database | None = None) -> ProcessSpec:
    """The webhook bridge: signed pushes in, queued durably, Prefect events out.

    Its queue lives where Prefect's data does: in Prefect's PostgreSQL
    database when the server uses one (the URL reaches the bridge alone), else
    in a SQLite file under the home.
    """
    url = f"http://{HOST}:{ports.bridge}"
    postgres = database is not None and database.kind == "PostgreSQL"
    return ProcessSpec(
        name="bridge",
        argv=(sys.executable, "-m", "deployments.bridge", "--port", str(ports.bridge)),
        url=f"{url}/hooks/",
        health_url=f"{url}/healthz",
        port=ports.bridge,
        secret_env={"SLIPWAY_INTAKE_DATABASE_URL": database.url} if postgres and database else {},
        preload=("deployments.bridge", "blocks.webhook", "tasks.git", *_SERVES),
    )


_SERVES = ("blocks", "uvicorn")
"""What every forked child imports: the blocks (and with them Prefect) and its web server."""


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
