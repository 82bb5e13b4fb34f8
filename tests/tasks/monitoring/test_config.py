"""Rules, configs, targets and alert events, checked without running the stack.

Generated rule files must pass ``promtool check rules`` (Debian's prometheus
package ships promtool); under CI a missing promtool fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocks.monitoring import MonitoringSettings, ServiceThresholds
from slipway.home import Ports
from slipway.process import run
from tasks.monitoring.config import write_configs
from tasks.monitoring.events import Alert, alert_event
from tasks.monitoring.layout import MonitoringLayout
from tasks.monitoring.rules import duration, service_rules
from tasks.monitoring.targets import ServiceTarget, write_targets
from tasks.monitoring.teams import team_of
from testkit.platform import free_port


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


@pytest.fixture
def layout(tmp_path: Path) -> MonitoringLayout:
    return MonitoringLayout(tmp_path / "monitoring", Ports())


def test_generated_rules_and_config_pass_promtool(layout: MonitoringLayout) -> None:
    settings = MonitoringSettings(
        overrides={"payments": ServiceThresholds(error_ratio=0.01, latency_p95_seconds=0.2)}
    )
    write_configs(layout, settings, ["payments", "search", "a-b-c"])
    result = run([promtool(), "check", "rules", *sorted(layout.rules.glob("*.yml"))])
    assert "SUCCESS: 8 rules found" in result.stdout and "SUCCESS: 6 rules found" in result.stdout
    run([promtool(), "check", "config", str(layout.prometheus_config)])


def test_each_service_gets_its_own_thresholds() -> None:
    settings = MonitoringSettings(overrides={"payments": ServiceThresholds(error_ratio=0.01)})
    groups = {
        g["name"]: g["rules"] for g in service_rules(settings, ["payments", "search"])["groups"]
    }
    assert groups["service-payments"][0]["expr"].endswith("> 0.01")
    assert groups["service-search"][0]["expr"].endswith("> 0.05")
    assert groups["service-search"][1]["expr"].endswith("> 0.5")
    assert all(r["labels"]["service"] == "search" for r in groups["service-search"])


def test_durations_are_prometheus_durations() -> None:
    assert [duration(s) for s in (0, 0.5, 2, 90, 3725)] == ["0s", "500ms", "2s", "1m30s", "1h2m5s"]


@pytest.mark.parametrize(
    ("owner", "team"),
    [("group:payments", "payments"), ("group:default/Web_Team", "web-team"), ("alice", "alice")],
)
def test_the_team_is_the_owner_without_its_kind(owner: str, team: str) -> None:
    assert team_of(owner) == team


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValidationError, match="not an http"):
        MonitoringSettings(otlp_endpoint="collector:4318")
    with pytest.raises(ValidationError):
        MonitoringSettings(error_ratio=2)
    assert MonitoringSettings(otlp_endpoint="").otlp_endpoint is None


def test_targets_are_written_once_and_carry_the_team(layout: MonitoringLayout) -> None:
    target = ServiceTarget("payments", "dev", "f" * 40, "payments", "127.0.0.1:8101")
    assert write_targets(layout, [target])
    assert not write_targets(layout, [target])  # unchanged: Prometheus re-reads nothing
    [services] = json.loads((layout.targets / "services.json").read_text())
    assert services["targets"] == ["127.0.0.1:8101"]
    assert services["labels"] == {
        "service": "payments",
        "environment": "dev",
        "sha": "f" * 12,
        "team": "payments",
    }
    [probe] = json.loads((layout.targets / "probes.json").read_text())
    assert probe["targets"] == ["http://127.0.0.1:8101/healthz"]
    assert not list(layout.targets.glob(".*"))  # no temporary file left behind


def test_an_alert_becomes_an_event_on_the_service_for_its_team() -> None:
    alert = Alert(
        status="firing",
        labels={
            "alertname": "SlipwayServiceDown",
            "service": "payments",
            "environment": "prod",
            "team": "payments",
            "audience": "team",
            "severity": "critical",
        },
        annotations={"summary": "payments in prod is down"},
        startsAt="2026-01-01T00:00:00Z",
        generatorURL="http://127.0.0.1:9090/graph?g0.expr=x",
        fingerprint="abc",
    )
    event = alert_event(alert, alertmanager_url="http://127.0.0.1:9093")
    assert event["event"] == "slipway.alert.firing"
    assert event["resource"]["prefect.resource.id"] == "slipway.service.payments"
    assert event["resource"]["slipway.team"] == "payments"
    assert event["resource"]["slipway.environment"] == "prod"
    assert event["payload"]["link"] == alert.generatorURL
    assert alert_event(alert, alertmanager_url="x")["id"] == event["id"]  # a retry: one event
    resolved = alert.model_copy(update={"status": "resolved"})
    assert alert_event(resolved, alertmanager_url="x")["event"] == "slipway.alert.resolved"
    platform = alert.model_copy(update={"labels": {**alert.labels, "audience": "platform"}})
    assert alert_event(platform, alertmanager_url="x")["resource"]["slipway.team"] == "platform"


def test_the_portal_sees_monitoring_once_up_has_configured_it(
    layout: MonitoringLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.monitoring.view import NoMonitoring, monitoring_view

    monkeypatch.setenv("SLIPWAY_HOME", str(layout.root.parent))
    nobody = str(free_port())  # nothing listens: every answer is "unknown"
    monkeypatch.setenv("SLIPWAY_PROMETHEUS_PORT", nobody)
    monkeypatch.setenv("SLIPWAY_ALERTMANAGER_PORT", nobody)
    assert isinstance(monitoring_view(), NoMonitoring)
    write_configs(layout, MonitoringSettings(), [])
    view = monitoring_view()
    assert view.configured and f"127.0.0.1:{nobody}" in view.status
    assert view.firing("svc") is None and view.rule_count("svc") is None  # unknown, not "none"
