"""Prometheus', Alertmanager's and the blackbox exporter's configuration, written under the home.

`slipway up` writes them before it starts the three; the monitor process
rewrites the rule files when the catalog changes and asks Prometheus to
reload (``--web.enable-lifecycle``). Scrape targets are not in here: they are
file_sd files (`tasks.monitoring.targets`), which Prometheus re-reads by itself.

Jobs:

- ``services``: each running environment's ``/metrics``;
- ``probes``: each environment's health URL, probed through the blackbox exporter;
- ``platform``: the monitor process (flow runs, releases, scans) and the
  webhook bridge (queued deliveries, signature failures).

The three parts require a login of every caller (`web_config`), Prometheus
itself when it talks to Alertmanager and the blackbox exporter included: a
service on the same host cannot silence its alerts, read other services'
series or stop Prometheus through its lifecycle API.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import yaml

from blocks.monitoring import MonitoringSettings
from slipway.errors import MonitoringError
from slipway.home import HOST
from slipway.names import NameDumper
from slipway.private import write_private
from tasks.monitoring.layout import MonitoringLayout, write_atomically
from tasks.monitoring.rules import duration, platform_rules, service_rules, to_yaml

__all__ = [
    "PROBE_MODULE",
    "alertmanager_config",
    "blackbox_config",
    "prometheus_config",
    "reload",
    "web_config",
    "write_configs",
    "write_rules",
]

logger = logging.getLogger(__name__)

PROBE_MODULE = "http_2xx"
"""The blackbox module that probes health URLs."""


def prometheus_config(layout: MonitoringLayout, settings: MonitoringSettings) -> dict[str, Any]:
    """``prometheus.yml``: three file_sd jobs, the rule files and this host's Alertmanager."""
    interval = duration(settings.scrape_interval_seconds)
    timeout = duration(min(settings.scrape_interval_seconds, 10.0))

    def file_sd(name: str) -> list[dict[str, Any]]:
        # Prometheus watches the files; the refresh interval is only a fallback.
        return [{"files": [str(layout.targets / f"{name}.json")], "refresh_interval": "1m"}]

    blackbox = f"{HOST}:{layout.ports.blackbox}"
    login = {"username": layout.login()[0], "password_file": str(layout.password_file)}
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": timeout,
            "evaluation_interval": duration(settings.evaluation_interval_seconds),
        },
        "rule_files": [str(layout.rules / "*.yml")],
        "alerting": {
            "alertmanagers": [
                {
                    "basic_auth": login,
                    "static_configs": [{"targets": [f"{HOST}:{layout.ports.alertmanager}"]}],
                }
            ]
        },
        "scrape_configs": [
            {"job_name": "services", "file_sd_configs": file_sd("services")},
            {
                "job_name": "probes",
                "metrics_path": "/probe",
                "basic_auth": login,
                "params": {"module": [PROBE_MODULE]},
                "file_sd_configs": file_sd("probes"),
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": blackbox},
                ],
            },
            {"job_name": "platform", "file_sd_configs": file_sd("platform")},
        ],
    }


def alertmanager_config(layout: MonitoringLayout, settings: MonitoringSettings) -> dict[str, Any]:
    """``alertmanager.yml``: every alert to the platform receiver, which tells people.

    Grouped per alert, service and environment, so each environment's outage
    is its own notification; resolved alerts are sent too. The receiver
    authenticates Alertmanager by a bearer token kept in a file only this user reads.
    """
    group_interval = max(settings.evaluation_interval_seconds * 2, settings.group_wait_seconds, 1)
    return {
        "route": {
            "receiver": "slipway",
            "group_by": ["alertname", "service", "environment"],
            "group_wait": duration(settings.group_wait_seconds),
            "group_interval": duration(group_interval),
            "repeat_interval": duration(settings.repeat_interval_minutes * 60),
        },
        "receivers": [
            {
                "name": "slipway",
                "webhook_configs": [
                    {
                        "url": f"{layout.monitor_url}/alerts",
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(layout.token_file),
                            }
                        },
                    }
                ],
            }
        ],
    }


def blackbox_config() -> dict[str, Any]:
    """``blackbox.yml``: a GET of the health URL must answer 2xx over IPv4."""
    return {
        "modules": {
            PROBE_MODULE: {
                "prober": "http",
                "timeout": "4s",
                "http": {"preferred_ip_protocol": "ip4", "method": "GET"},
            }
        }
    }


def web_config(layout: MonitoringLayout) -> str | None:
    """The parts' ``web.yml`` with a new bcrypt hash of the password; None when it is current.

    A hash is salted, so an unchanged password keeps the file as it is.
    """
    import bcrypt

    user, password = layout.login()
    secret = password.get_secret_value().encode()
    if layout.web_config.exists():
        current = yaml.safe_load(layout.web_config.read_text()) or {}
        hashed = (current.get("basic_auth_users") or {}).get(user)
        if isinstance(hashed, str) and bcrypt.checkpw(secret, hashed.encode()):
            return None
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10)).decode()
    return yaml.safe_dump({"basic_auth_users": {user: hashed}})


def write_rules(
    layout: MonitoringLayout, settings: MonitoringSettings, services: list[str]
) -> bool:
    """Write the platform's and the services' rule files; returns whether either changed."""
    layout.ensure()
    changed = write_atomically(layout.rules / "platform.yml", to_yaml(platform_rules(settings)))
    services_yaml = to_yaml(service_rules(settings, services))
    return write_atomically(layout.rules / "services.yml", services_yaml) or changed


def write_configs(
    layout: MonitoringLayout, settings: MonitoringSettings, services: list[str]
) -> None:
    """Write every config and rule file, and the receiver's token and login when there is none."""
    layout.ensure()
    layout.receiver_token()
    web = web_config(layout)
    if web is not None:
        write_private(layout.web_config, web)
    for path, config in (
        (layout.prometheus_config, prometheus_config(layout, settings)),
        (layout.alertmanager_config, alertmanager_config(layout, settings)),
        (layout.blackbox_config, blackbox_config()),
    ):
        write_atomically(path, yaml.dump(config, Dumper=NameDumper, sort_keys=False, width=1000))
    write_rules(layout, settings, services)


def reload(layout: MonitoringLayout) -> None:
    """Ask Prometheus to re-read its config and rule files.

    Raises:
        MonitoringError: Prometheus is unreachable or refused the new files
            (its answer says which line).
    """
    url = f"{layout.prometheus_url}/-/reload"
    try:
        response = httpx.post(url, timeout=10, auth=layout.basic_auth())
    except httpx.HTTPError as e:
        raise MonitoringError(
            f"Prometheus at {layout.prometheus_url} could not be asked to reload: {e}",
            hint="check `slipway status`; Prometheus reads the files again when it restarts",
        ) from e
    if not response.is_success:
        raise MonitoringError(
            f"Prometheus refused the new configuration: {response.text.strip()[:500]}",
            hint=f"check the files under {layout.root} with `promtool check config`",
        )
