"""Where the monitoring stack keeps its files under the home, and where its parts listen.

Everything lives under ``<home>/monitoring``: the three config files, the rule
files, the file_sd target files that Prometheus re-reads when they change, each
part's data, and the bearer token that Alertmanager presents to the platform's
receiver.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from slipway.home import HOST, Ports, SlipwayHome
from slipway.private import write_private

__all__ = ["WEB_USER", "MonitoringLayout", "write_atomically"]

WEB_USER = "slipway"
"""The one user Prometheus, Alertmanager and the blackbox exporter let in."""


@dataclass(frozen=True)
class MonitoringLayout:
    """The monitoring files of one home and the loopback ports of its parts."""

    root: Path
    """``<home>/monitoring``."""
    ports: Ports
    """The ports of this home's parts."""

    @classmethod
    def of(cls, home: SlipwayHome, ports: Ports) -> MonitoringLayout:
        """The layout under ``home``."""
        return cls(home.monitoring, ports)

    @classmethod
    def from_env(cls) -> MonitoringLayout:
        """The layout of ``$SLIPWAY_HOME`` with the ``SLIPWAY_*_PORT`` ports, as flows see it."""
        return cls.of(SlipwayHome.from_env(), Ports.from_env())

    @property
    def prometheus_config(self) -> Path:
        """``prometheus.yml``."""
        return self.root / "prometheus.yml"

    @property
    def alertmanager_config(self) -> Path:
        """``alertmanager.yml``."""
        return self.root / "alertmanager.yml"

    @property
    def blackbox_config(self) -> Path:
        """``blackbox.yml``: the probe modules."""
        return self.root / "blackbox.yml"

    @property
    def rules(self) -> Path:
        """Rule files: ``platform.yml`` and ``services.yml``."""
        return self.root / "rules"

    @property
    def targets(self) -> Path:
        """file_sd target files; Prometheus re-reads them on change."""
        return self.root / "targets"

    @property
    def prometheus_data(self) -> Path:
        """Prometheus' TSDB."""
        return self.root / "data" / "prometheus"

    @property
    def alertmanager_data(self) -> Path:
        """Alertmanager's silences and notification log."""
        return self.root / "data" / "alertmanager"

    @property
    def token_file(self) -> Path:
        """The receiver's bearer token; Alertmanager reads it as ``credentials_file``."""
        return self.root / "receiver.token"

    @property
    def password_file(self) -> Path:
        """The parts' login password; Prometheus reads it as ``password_file``."""
        return self.root / "web.password"

    @property
    def web_config(self) -> Path:
        """The parts' ``--web.config.file``: the bcrypt hash of the password."""
        return self.root / "web.yml"

    @property
    def prometheus_url(self) -> str:
        """Prometheus' HTTP API and UI."""
        return f"http://{HOST}:{self.ports.prometheus}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager's HTTP API and UI."""
        return f"http://{HOST}:{self.ports.alertmanager}"

    @property
    def monitor_url(self) -> str:
        """The platform metrics and receiver process."""
        return f"http://{HOST}:{self.ports.monitor}"

    def ensure(self) -> None:
        """Create the directories; safe on an existing layout."""
        for path in (self.rules, self.targets, self.prometheus_data, self.alertmanager_data):
            path.mkdir(parents=True, exist_ok=True)

    def receiver_token(self) -> SecretStr:
        """The receiver's token, created (readable by this user only) on first use."""
        return self._secret(self.token_file)

    def login(self) -> tuple[str, SecretStr]:
        """User and password for Prometheus, Alertmanager and the blackbox exporter.

        The password is created (readable by this user only) on first use.
        """
        return WEB_USER, self._secret(self.password_file)

    def basic_auth(self) -> tuple[str, str]:
        """`login` as an HTTP client's ``auth``: for the platform's own calls only."""
        user, password = self.login()
        return user, password.get_secret_value()

    def _secret(self, path: Path) -> SecretStr:
        """The secret in ``path``, made on first use; a reader never sees half a file."""
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            write_private(tmp, secrets.token_urlsafe(32))
            try:
                os.link(tmp, path)  # never replaces one another process made first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return SecretStr(path.read_text().strip())


def write_atomically(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` in one rename; returns whether the content changed.

    Prometheus watches file_sd files: a reader must never see half a file,
    and an unchanged file is not rewritten, so nothing is re-read for nothing.
    """
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
