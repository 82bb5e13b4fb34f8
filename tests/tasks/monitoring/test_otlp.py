"""Platform logs and run events reach a team's collector over OTLP/HTTP.

The collector is a real HTTP server on loopback that takes OTLP/HTTP's
``POST /v1/logs`` and decodes the protobuf body with OpenTelemetry's own
message types, as a collector does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.monitoring import MonitoringSettings
from tasks.monitoring.otlp import ship_logs


class Collector:
    """Keeps every log record of every OTLP/HTTP export, with the headers it came with."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        self.records: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportLogsServiceRequest.FromString(body)
                collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                for resource_logs in request.resource_logs:
                    resource = {
                        a.key: a.value.string_value for a in resource_logs.resource.attributes
                    }
                    for scope in resource_logs.scope_logs:
                        for record in scope.log_records:
                            collector.records.append(
                                {
                                    "resource": resource,
                                    "path": self.path,
                                    "body": record.body.string_value,
                                    "event_name": record.event_name,
                                    "severity": record.severity_text,
                                    "attributes": {
                                        a.key: a.value.string_value for a in record.attributes
                                    },
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()


def test_logs_and_events_are_shipped_to_the_collector_with_the_token(
    collector: Collector,
) -> None:
    from prefect.events import Event

    settings = MonitoringSettings(otlp_endpoint=collector.url, otlp_token=SecretStr("t0ken"))
    shipper = ship_logs(settings, component="slipway-test")
    assert shipper is not None
    try:
        logging.getLogger("tasks.release").warning("candidate %s failed", "svc-dev-abc")
        shipper.event(
            Event(
                id=uuid.uuid4(),
                occurred=datetime.now(UTC),
                event="prefect.flow-run.Failed",
                resource={"prefect.resource.id": "prefect.flow-run.123"},
                related=[
                    {
                        "prefect.resource.id": "prefect.flow.1",
                        "prefect.resource.role": "flow",
                        "prefect.resource.name": "build-test-deploy",
                    }
                ],
            )
        )
        assert shipper.flush()
    finally:
        shipper.shutdown()
    assert {r["path"] for r in collector.records} == {"/v1/logs"}
    assert collector.headers
    assert all(h.get("authorization") == "Bearer t0ken" for h in collector.headers)
    log = next(r for r in collector.records if r["body"] == "candidate svc-dev-abc failed")
    assert log["severity"] == "WARN" and log["resource"]["service.name"] == "slipway-test"
    event = next(r for r in collector.records if r["event_name"] == "prefect.flow-run.Failed")
    assert event["attributes"]["related.flow"] == "build-test-deploy"
    assert event["attributes"]["resource.prefect.resource.id"] == "prefect.flow-run.123"
    assert event["severity"] == "WARN"
    # Detached: nothing more is shipped once it is shut down.
    count = len(collector.records)
    logging.getLogger("tasks.release").warning("after shutdown")
    assert len(collector.records) == count


def test_without_an_endpoint_nothing_is_shipped() -> None:
    assert ship_logs(MonitoringSettings(), component="slipway-test") is None
