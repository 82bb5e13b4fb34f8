"""Ship platform logs and run events to a team's own OpenTelemetry collector (OTLP/HTTP).

Optional: only when the `MonitoringSettings` block names an ``otlp_endpoint``.
The OpenTelemetry SDK batches records in a thread of its own and posts them
as protobuf to ``<endpoint>/v1/logs``; a collector that is down costs dropped
records and a warning, never a blocked flow.

- Logs: a `LoggingHandler` on the root logger of the process that calls
  `ship_logs` (the monitor, and the deployment runner with its flow runs).
- Run events: the monitor forwards every flow-run and Slipway event it
  follows as one log record (`OtlpShipper.event`), with the event's name as
  ``event.name`` and its resource labels as attributes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

    from blocks.monitoring import MonitoringSettings

__all__ = ["OtlpShipper", "ship_logs"]

logger = logging.getLogger(__name__)


class OtlpShipper:
    """One OTLP/HTTP log pipeline: a provider, its batch processor and exporter."""

    def __init__(self, provider: LoggerProvider, endpoint: str, handler: logging.Handler) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.handler = handler
        self._events = provider.get_logger("slipway.events")

    def event(self, event: Any) -> None:
        """Ship one Prefect event (``prefect.events.Event``) as a log record."""
        from opentelemetry._logs import SeverityNumber

        attributes: dict[str, str] = {f"resource.{k}": str(v) for k, v in event.resource.items()}
        attributes["event.id"] = str(event.id)
        for related in event.related:
            role = related.get("prefect.resource.role", "related")
            attributes[f"related.{role}"] = str(related.get("prefect.resource.name", related.id))
        severity = (
            SeverityNumber.WARN
            if event.event.endswith((".Failed", ".Crashed", ".failed", ".firing"))
            else SeverityNumber.INFO
        )
        self._events.emit(
            timestamp=int(event.occurred.timestamp() * 1e9),
            severity_number=severity,
            severity_text=severity.name,
            body=f"{event.event} {event.resource.id}",
            attributes=attributes,
            event_name=event.event,
        )

    def flush(self, timeout_millis: int = 5000) -> bool:
        """Send what is batched now; returns whether it went out in time."""
        return bool(self.provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Detach from the root logger, flush, and stop the exporter's thread."""
        logging.getLogger().removeHandler(self.handler)
        self.provider.shutdown()


def ship_logs(
    settings: MonitoringSettings, *, component: str, level: int = logging.INFO
) -> OtlpShipper | None:
    """Attach an OTLP log pipeline to this process's root logger; None when none is set.

    Args:
        settings: Where to ship (``otlp_endpoint``) and with which token.
        component: The ``service.name`` the records carry, e.g. ``slipway-monitor``.
        level: The lowest level shipped.
    """
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    headers = {}
    if settings.otlp_token is not None:
        headers["Authorization"] = f"Bearer {settings.otlp_token.get_secret_value()}"
    endpoint = f"{settings.otlp_endpoint}/v1/logs"
    resource = Resource.create({"service.name": component, "service.namespace": "slipway"})
    provider = LoggerProvider(resource=resource)
    exporter = OTLPLogExporter(endpoint=endpoint, headers=headers, timeout=10)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=1000))
    handler = LoggingHandler(level=level, logger_provider=provider)
    # On the root logger, whose level stays: flow and task run logs propagate to it.
    logging.getLogger().addHandler(handler)
    logger.info("shipping %s logs and run events to %s", component, endpoint)
    return OtlpShipper(provider, endpoint, handler)
