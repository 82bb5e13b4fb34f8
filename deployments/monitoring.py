"""The monitoring parts that `slipway up` runs: Prometheus, Alertmanager, the blackbox exporter, the monitor.

The first three are Debian's packages, started here bound to loopback with
their config and data under ``<home>/monitoring`` (`tasks.monitoring.layout`),
each requiring the home's monitoring login (``--web.config.file``);
Alertmanager runs without clustering. The monitor is Slipway's own process
(`deployments.monitor`). A missing package is reported with the fix, like the
registry, and the rest of the platform starts without it.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from deployments.components import ProcessSpec
from slipway.health import ComponentHealth, http_health
from slipway.home import HOST, Ports, SlipwayHome
from slipway.private import write_private
from tasks.monitoring.layout import MonitoringLayout

if TYPE_CHECKING:
    from blocks.monitoring import MonitoringSettings

Report = Callable[[str], None]

__all__ = [
    "MONITORING_HINT",
    "MonitoringBinaries",
    "ensure_alert_notifications",
    "follow_embedded_prefect_ui",
    "follow_prefect_ui",
    "monitor_spec",
    "monitoring_health",
    "monitoring_specs",
    "planned_monitoring",
    "prepare_monitoring",
]

MONITORING_HINT = (
    "install Debian's monitoring packages: "
    "`apt-get install prometheus prometheus-alertmanager prometheus-blackbox-exporter`"
)


@dataclass(frozen=True)
class MonitoringBinaries:
    """Where Debian's monitoring binaries are; None for one that is not installed."""

    prometheus: str | None
    alertmanager: str | None
    blackbox: str | None

    @classmethod
    def find(cls) -> MonitoringBinaries:
        """Look them up on PATH."""
        return cls(
            shutil.which("prometheus"),
            shutil.which("prometheus-alertmanager"),
            shutil.which("prometheus-blackbox-exporter"),
        )

    def missing(self) -> list[str]:
        """The names of those not installed."""
        names = ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
        found = (self.prometheus, self.alertmanager, self.blackbox)
        return [name for name, path in zip(names, found, strict=True) if path is None]


_Part = tuple[str, str | None, str, str, int, tuple[str, ...]]
"""Name, binary, URL, health path, port and own flags of one monitoring part."""


def _parts(
    layout: MonitoringLayout, binaries: MonitoringBinaries, retention_days: int
) -> list[_Part]:
    ports = layout.ports
    blackbox_url = f"http://{HOST}:{ports.blackbox}"
    return [
        (
            "blackbox",
            binaries.blackbox,
            blackbox_url,
            "/-/healthy",
            ports.blackbox,
            (f"--config.file={layout.blackbox_config}",),
        ),
        (
            "alertmanager",
            binaries.alertmanager,
            layout.alertmanager_url,
            "/-/ready",
            ports.alertmanager,
            (
                f"--config.file={layout.alertmanager_config}",
                f"--storage.path={layout.alertmanager_data}",
                f"--web.external-url={layout.alertmanager_url}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ),
        ),
        (
            "prometheus",
            binaries.prometheus,
            layout.prometheus_url,
            "/-/ready",
            ports.prometheus,
            (
                f"--config.file={layout.prometheus_config}",
                f"--storage.tsdb.path={layout.prometheus_data}",
                f"--storage.tsdb.retention.time={retention_days}d",
                f"--web.external-url={layout.prometheus_url}",
                "--web.enable-lifecycle",  # the monitor reloads rules when services come and go
            ),
        ),
    ]


def monitoring_specs(
    layout: MonitoringLayout, binaries: MonitoringBinaries, *, retention_days: int = 15
) -> list[ProcessSpec]:
    """The specs of the installed parts; config files must have been written already.

    Each binds loopback and requires the home's login (``--web.config.file``),
    its health probe included.
    """
    login = layout.login()
    return [
        ProcessSpec(
            name,
            (
                binary,
                *flags,
                f"--web.listen-address={HOST}:{port}",
                f"--web.config.file={layout.web_config}",
            ),
            url,
            f"{url}{health}",
            port,
            health_login=login,
        )
        for name, binary, url, health, port, flags in _parts(layout, binaries, retention_days)
        if binary is not None
    ]


def monitor_spec(ports: Ports) -> ProcessSpec:
    """The platform's metrics and Alertmanager's receiver (`deployments.monitor`)."""
    url = f"http://{HOST}:{ports.monitor}"
    return ProcessSpec(
        name="monitor",
        argv=(sys.executable, "-m", "deployments.monitor", "--port", str(ports.monitor)),
        url=f"{url}/metrics",
        health_url=f"{url}/healthz",
        port=ports.monitor,
        preload=(
            *("deployments.monitor", "deployments.monitor_jobs", "blocks.monitoring"),
            *("tasks.monitoring.otlp", "tasks.monitoring.sync", "blocks", "uvicorn"),
        ),
    )


def monitoring_health(home: SlipwayHome, ports: Ports, running: set[str]) -> list[ComponentHealth]:
    """`slipway status` lines of the monitoring parts; a missing package says how to install it.

    Args:
        home: The data directory.
        ports: Its ports.
        running: The names of the components `slipway up` started.
    """
    layout = MonitoringLayout.of(home, ports)
    results = []
    for name, url, health in (
        ("prometheus", layout.prometheus_url, f"{layout.prometheus_url}/-/ready"),
        ("alertmanager", layout.alertmanager_url, f"{layout.alertmanager_url}/-/ready"),
        (
            "blackbox",
            f"http://{HOST}:{ports.blackbox}",
            f"http://{HOST}:{ports.blackbox}/-/healthy",
        ),
    ):
        if name in running:
            results.append(http_health(name, url, health, auth=layout.basic_auth()))
        else:
            results.append(
                ComponentHealth(
                    name, url, False, f"not installed, so not running. Fix: {MONITORING_HINT}"
                )
            )
    monitor = f"{layout.monitor_url}"
    results.append(http_health("monitor", f"{monitor}/metrics", f"{monitor}/healthz"))
    return results


def planned_monitoring(home: SlipwayHome, ports: Ports) -> tuple[list[ProcessSpec], list[str]]:
    """The monitoring specs `slipway up` will start, and the packages that are missing."""
    binaries = MonitoringBinaries.find()
    layout = MonitoringLayout.of(home, ports)
    return [*monitoring_specs(layout, binaries), monitor_spec(ports)], binaries.missing()


def prepare_monitoring(
    home: SlipwayHome,
    ports: Ports,
    specs: list[ProcessSpec],
    missing: list[str],
    report: Report,
    *,
    settings: MonitoringSettings,
    services: list[str],
) -> list[ProcessSpec]:
    """Write the configs and rules; returns ``specs`` as they must start.

    ``settings`` and the catalog's ``services`` come from the caller, who
    read them once. The scrape targets are not written here: Prometheus
    watches their files, so `slipway up` writes them once it starts
    (`tasks.monitoring.sync.write_scrape_targets`), and listing Docker's
    containers no longer holds back the start of all three. Starting them,
    and waiting for their health, is the caller's, with the other components'.
    """
    from tasks.monitoring.config import write_configs

    if missing:
        report(
            f"monitoring: {', '.join(missing)} not installed, so no alerts. Fix: {MONITORING_HINT}"
        )
    write_configs(MonitoringLayout.of(home, ports), settings, sorted(services))
    retention = {"--storage.tsdb.retention.time": f"{settings.retention_days}d"}
    return [
        replace(
            spec,
            argv=tuple(
                f"{flag}={retention[flag]}" if (flag := arg.partition("=")[0]) in retention else arg
                for arg in spec.argv
            ),
        )
        for spec in specs
    ]


def ensure_alert_notifications(report: Report, ui_url: str) -> None:
    """The notification block type and the automations that route alerts (Prefect is up).

    ``ui_url`` is the monitoring settings' own, which notification links are built from.
    """
    from blocks.notifications import EmailNotification
    from tasks.monitoring.automations import ensure_notification_automations

    EmailNotification.register_type_and_schema()
    for change in ensure_notification_automations(ui_url):
        report(f"notifications: {change}")


_UI_RECORD = "prefect-ui-url"
_LOOPBACK_ROOT = re.compile(rf"http://{re.escape(HOST)}:\d+")


def follow_embedded_prefect_ui(home: SlipwayHome, ui_url: str) -> str | None:
    """`follow_prefect_ui` of the monitoring settings as Prefect holds them now; its note."""
    from blocks.monitoring import MonitoringSettings

    return follow_prefect_ui(home, ui_url, MonitoringSettings.load_default())[1]


def follow_prefect_ui(
    home: SlipwayHome, ui_url: str, settings: MonitoringSettings
) -> tuple[MonitoringSettings, str | None]:
    """Keep the monitoring settings' ``ui_url`` on the embedded Prefect UI; a note if it moved.

    Needs Prefect's API. Notification links are built from ``ui_url``, so a
    Prefect started on another port (or behind a new public URL) would leave
    them pointing at a dead UI. The block follows ``ui_url`` when it holds the
    URL the embedded UI had at the previous start, recorded under
    ``<home>/run`` at each start; in a home from before that record, when it
    holds a loopback root URL, which only Slipway's default writes. Any other
    value is the platform team's choice and is left as it is.

    Args:
        home: The data directory, which holds the record.
        ui_url: Where the embedded UI answers now.
        settings: The ``default`` document, as Prefect holds it now.

    Returns:
        The settings as they are now, and the note to show when they changed.
    """
    from blocks import DEFAULT_DOCUMENT

    record = home.run / _UI_RECORD
    try:
        previous: str | None = record.read_text().strip()
    except FileNotFoundError:
        previous = None
    stored, wanted = settings.ui_url, ui_url.rstrip("/")
    ours = stored == previous or (previous is None and _LOOPBACK_ROOT.fullmatch(stored) is not None)
    note = None
    if stored != wanted and ours:
        settings = settings.model_copy(update={"ui_url": wanted})
        settings.save(DEFAULT_DOCUMENT, overwrite=True)
        note = (
            f"the monitoring settings' ui_url follows the Prefect UI from {stored} to {wanted} "
            f"in the block slipway-monitoring-settings/{DEFAULT_DOCUMENT}"
        )
    write_private(record, wanted + "\n")
    return settings, note
