"""How Slipway watches services: scrape and rule timing, alert thresholds, analysis, OTLP.

The defaults are chosen so that a service that stops answering is notified
within 30 s (``bench/alerting.py`` measures it): probes every 5 s, rules
evaluated every 5 s, the down alert firing after 10 s, Alertmanager waiting
1 s to group.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from blocks.base import SlipwayBlock
from slipway.home import HOST, Ports, SlipwayHome

__all__ = ["MonitoringSettings", "ServiceThresholds"]


class ServiceThresholds(BaseModel):
    """The thresholds of one service's alerts; the platform's defaults where None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_ratio: float | None = Field(
        default=None, ge=0, le=1, title="5xx ratio", description="Share of 5xx answers that alerts."
    )
    latency_p95_seconds: float | None = Field(
        default=None, gt=0, title="p95 latency", description="95th percentile latency that alerts."
    )


class MonitoringSettings(SlipwayBlock):
    """Prometheus' timing, the alert thresholds, release analysis and OTLP log shipping.

    Example:
        ```python
        from blocks import MonitoringSettings
        settings = MonitoringSettings.load("default")
        ```
    """

    _block_type_name = "Slipway Monitoring Settings"
    _block_type_slug = "slipway-monitoring-settings"

    scrape_interval_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        title="Scrape interval",
        description="How often Prometheus scrapes services and probes their health URL.",
    )
    evaluation_interval_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        title="Rule evaluation interval",
        description="How often Prometheus evaluates the alert rules.",
    )
    down_for_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        title="Down after",
        description="How long a service's health probe must fail before the down alert fires.",
    )
    error_ratio: float = Field(
        default=0.05,
        ge=0,
        le=1,
        title="5xx ratio",
        description="Share of a service's answers that are 5xx above which it alerts.",
    )
    error_ratio_for_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        title="5xx ratio for",
        description="How long the 5xx ratio must stay above the threshold before it alerts.",
    )
    latency_p95_seconds: float = Field(
        default=0.5,
        gt=0,
        title="p95 latency",
        description="A service's 95th percentile request latency above which it alerts.",
    )
    latency_for_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        title="p95 latency for",
        description="How long the p95 latency must stay above the threshold before it alerts.",
    )
    rate_window_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        title="Rate window",
        description="The window of rate() in the 5xx ratio and latency rules and in release analysis.",
    )
    webhook_queue_stuck_seconds: float = Field(
        default=300.0,
        gt=0,
        title="Webhook queue stuck after",
        description="Age of the oldest queued webhook delivery above which the platform alerts.",
    )
    signature_failures_per_minute: float = Field(
        default=10.0,
        gt=0,
        title="Signature failures per minute",
        description="Rate of webhook deliveries with a bad signature above which the platform alerts.",
    )
    event_alert_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86400,
        title="Event alerts last",
        description="How long a deploy-failed, drift or finding alert stays firing after its event.",
    )
    group_wait_seconds: float = Field(
        default=1.0,
        ge=0,
        le=600,
        title="Group wait",
        description="How long Alertmanager waits to group alerts before the first notification.",
    )
    repeat_interval_minutes: float = Field(
        default=240.0,
        ge=1,
        title="Repeat interval",
        description="How often a still-firing alert is notified again.",
    )
    retention_days: int = Field(
        default=15,
        ge=1,
        le=3650,
        title="Retention",
        description="How many days of metrics Prometheus keeps.",
    )
    analysis_window_seconds: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        title="Release analysis window",
        description="How long a release watches the new version after the switch; 0 turns analysis off.",
    )
    analysis_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        title="Release analysis interval",
        description="Seconds between two looks at the new version's metrics during the window.",
    )
    analysis_probe_failures: int = Field(
        default=2,
        ge=1,
        le=100,
        title="Release analysis probe failures",
        description="Failed health probes in a row that fail the analysis.",
    )
    ui_url: str = Field(
        default=f"http://{HOST}:4200",
        title="Prefect UI URL",
        description="Where people open the Prefect UI; notification links point there.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        title="OTLP endpoint",
        description="An OpenTelemetry collector's OTLP/HTTP base URL (e.g. http://collector:4318); "
        "platform logs and run events are shipped there. Empty: nothing is shipped.",
    )
    otlp_token: SecretStr | None = Field(
        default=None,
        title="OTLP token",
        description="Sent as 'Authorization: Bearer <token>' to the OTLP endpoint, if set.",
    )
    overrides: dict[str, ServiceThresholds] = Field(
        default_factory=dict,
        title="Per-service thresholds",
        description="Service name to its own 5xx ratio and p95 latency thresholds.",
    )

    @field_validator("otlp_endpoint", "ui_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None if value == "" else value
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    def thresholds(self, service: str) -> tuple[float, float]:
        """The 5xx ratio and p95 latency that alert for ``service``."""
        own = self.overrides.get(service, ServiceThresholds())
        ratio = own.error_ratio if own.error_ratio is not None else self.error_ratio
        latency = own.latency_p95_seconds or self.latency_p95_seconds
        return ratio, latency

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """The defaults, with links to this machine's Prefect UI."""
        return cls(ui_url=f"http://{HOST}:{ports.prefect}")
