"""Where Slipway keeps its data, and on which loopback ports its parts listen.

The data directory (``.slipway/`` under the current directory, or
``$SLIPWAY_HOME``) holds everything that must survive a restart: Prefect's
database, the bare git repositories, the registry's blobs, Terraform state and
the artifact store. Deleting it resets the platform.

It belongs to the user who runs `slipway up` alone: the directory is 0700 and
nothing under it grants anything to group or others (`slipway.private`).
Platform keys (the Prefect API's auth string, the release-signing key) live
in ``keys/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import ConfigurationError

__all__ = ["HOST", "Ports", "SlipwayHome"]

HOST = "127.0.0.1"
"""Every embedded service binds loopback only; nothing is exposed by default."""


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the embedded services.

    Each can be moved with an environment variable, e.g.
    ``SLIPWAY_PREFECT_PORT=4201``, or the matching ``slipway up`` flag.
    """

    prefect: int = 4200
    """Prefect's API and UI."""
    bridge: int = 4300
    """The webhook bridge."""
    docs: int = 4400
    """The docs portal."""
    registry: int = 5001
    """The OCI registry."""
    prometheus: int = 9090
    """Prometheus: metrics, rules and its UI."""
    alertmanager: int = 9093
    """Alertmanager: alert routing and silences."""
    blackbox: int = 9115
    """The blackbox exporter that probes services' health URLs."""
    monitor: int = 4500
    """The platform's metrics and Alertmanager's receiver (`deployments.monitor`)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Ports:
        """Read ``SLIPWAY_<NAME>_PORT`` overrides on top of the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name in _NAMES:
            raw = env.get(f"SLIPWAY_{name.upper()}_PORT")
            if raw is not None:
                values[name] = _port(raw, f"SLIPWAY_{name.upper()}_PORT")
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        """Name to port, in the order `slipway status` shows them."""
        return {name: getattr(self, name) for name in _NAMES}

    @property
    def prefect_api_url(self) -> str:
        """The URL that Prefect clients must be given."""
        return f"http://{HOST}:{self.prefect}/api"


_NAMES = (
    "prefect",
    "bridge",
    "docs",
    "registry",
    "prometheus",
    "alertmanager",
    "blackbox",
    "monitor",
)
"""Every port's name, in the order `slipway status` shows them."""


def _port(raw: str, name: str) -> int:
    try:
        port = int(raw)
    except ValueError as e:
        raise ConfigurationError(
            f"{name}={raw!r} is not a port number", hint="use a number from 1024 to 65535"
        ) from e
    if not 1024 <= port <= 65535:
        raise ConfigurationError(
            f"{name}={port} is outside 1024-65535", hint="use an unprivileged port"
        )
    return port


@dataclass(frozen=True)
class SlipwayHome:
    """The data directory and the fixed layout below it."""

    root: Path
    """Absolute path of the data directory."""

    @classmethod
    def from_env(cls) -> SlipwayHome:
        """``$SLIPWAY_HOME`` when set, else ``.slipway`` in the current directory."""
        raw = os.environ.get("SLIPWAY_HOME")
        return cls(Path(raw).expanduser().resolve() if raw else Path.cwd().resolve() / ".slipway")

    @property
    def prefect_home(self) -> Path:
        """``PREFECT_HOME`` of the embedded server: its SQLite database and settings."""
        return self.root / "prefect"

    @property
    def git_root(self) -> Path:
        """Bare repositories of the local git server."""
        return self.root / "git"

    @property
    def artifacts(self) -> Path:
        """The local artifact store: scan reports, published docs."""
        return self.root / "artifacts"

    @property
    def registry(self) -> Path:
        """Blob storage of the local OCI registry."""
        return self.root / "registry"

    @property
    def terraform(self) -> Path:
        """Local Terraform state and rendered workspaces."""
        return self.root / "terraform"

    @property
    def run(self) -> Path:
        """Pid and state files of a running `slipway up`."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        """One log file per supervised component."""
        return self.root / "logs"

    @property
    def spool(self) -> Path:
        """Webhook deliveries that could not be sent yet."""
        return self.root / "spool"

    @property
    def keys(self) -> Path:
        """Platform keys, each a 0600 file: the API auth string, the release-signing key."""
        return self.root / "keys"

    @property
    def intake(self) -> Path:
        """The webhook bridge's queue of accepted deliveries (SQLite), when Prefect runs on SQLite."""
        return self.root / "intake"

    @property
    def cache(self) -> Path:
        """What this host keeps to go faster and may lose at any time: the docs' rendered pages."""
        return self.root / "cache"

    @property
    def checkouts(self) -> Path:
        """A worker host's read-only checkouts of the platform, one per commit (`slipway.checkouts`)."""
        return self.root / "checkouts"

    @property
    def wheelhouses(self) -> Path:
        """Build-time dependencies fetched for image builds, by requirements digest."""
        return self.root / "wheelhouses"

    @property
    def monitoring(self) -> Path:
        """Prometheus', Alertmanager's and the blackbox exporter's config, targets and data."""
        return self.root / "monitoring"

    def ensure(self) -> None:
        """Create the layout, private to this user (0700); safe to call on an existing home."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (
            self.keys,
            self.prefect_home,
            self.git_root,
            self.artifacts,
            self.registry,
            self.terraform,
            self.run,
            self.logs,
            self.spool,
            self.intake,
            self.wheelhouses,
            self.monitoring,
        ):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
