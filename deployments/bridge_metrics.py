"""What the bridge counts, in Prometheus' text format at ``GET /metrics``.

Counters say what became of deliveries; gauges say how much waits and for
how long. A queue that stops draining shows as a growing
``slipway_intake_oldest_waiting_seconds`` while
``slipway_intake_last_delivered_timestamp_seconds`` stands still: the alert
rule of the monitoring work watches the first (e.g. above 300 for 5 minutes).
Each bridge has a registry of its own, so two apps in one process (tests)
count apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from deployments.intake import QueueStats

__all__ = ["CONTENT_TYPE", "BridgeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format."""


class BridgeMetrics:
    """The bridge's counters and gauges, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._count_requests(self.registry)
        self._count_forwarding(self.registry)
        self._gauge_queue(self.registry)

    def _count_requests(self, r: CollectorRegistry) -> None:
        """What the webhook endpoint answered."""
        self.accepted = Counter(
            "slipway_bridge_accepted", "Signed pushes stored in the intake queue.", registry=r
        )
        self.duplicates = Counter(
            "slipway_bridge_duplicates",
            "Deliveries answered 'duplicate': one with the same id and body was accepted before.",
            registry=r,
        )
        self.refused = Counter(
            "slipway_bridge_refused",
            "Requests refused with a 4xx other than a bad signature, by reason.",
            ["reason"],
            registry=r,
        )
        self.signature_failures = Counter(
            "slipway_bridge_signature_failures",
            "Requests without a signature or with a wrong one.",
            registry=r,
        )
        self.ignored = Counter(
            "slipway_bridge_ignored",
            "Signed deliveries that start nothing: other events, deleted refs, unknown services.",
            registry=r,
        )
        self.unavailable = Counter(
            "slipway_bridge_unavailable",
            "Pushes answered 503 because the intake queue could not store them.",
            registry=r,
        )

    def _count_forwarding(self, r: CollectorRegistry) -> None:
        """What became of accepted pushes on their way to Prefect."""
        self.forwarded = Counter(
            "slipway_intake_forwarded", "Push events posted to Prefect (first time).", registry=r
        )
        self.delivered = Counter(
            "slipway_intake_delivered", "Pushes whose runs Prefect created.", registry=r
        )
        self.superseded = Counter(
            "slipway_intake_superseded",
            "Pushes superseded by a newer push of the same branch.",
            registry=r,
        )
        self.failed = Counter(
            "slipway_intake_failed",
            "Pushes the forwarder gave up on (runs never created).",
            registry=r,
        )
        self.forward_errors = Counter(
            "slipway_intake_forward_errors",
            "Forwarder steps that failed (Prefect or the queue unreachable).",
            registry=r,
        )

    def _gauge_queue(self, r: CollectorRegistry) -> None:
        """How much waits in the intake queue, and for how long."""
        self.last_delivered = Gauge(
            "slipway_intake_last_delivered_timestamp_seconds",
            "When a push last became its runs (Unix time).",
            registry=r,
        )
        self.waiting = Gauge(
            "slipway_intake_waiting_deliveries",
            "Accepted pushes not delivered yet (queued or in flight).",
            registry=r,
        )
        self.in_flight = Gauge(
            "slipway_intake_in_flight_deliveries",
            "Pushes posted to Prefect whose runs are not confirmed yet.",
            registry=r,
        )
        self.oldest = Gauge(
            "slipway_intake_oldest_waiting_seconds",
            "Age of the oldest push not delivered yet; 0 when none waits.",
            registry=r,
        )
        self.unrecorded = Gauge(
            "slipway_intake_unrecorded_superseded",
            "Superseded pushes not yet recorded in Prefect.",
            registry=r,
        )
        self.failed_waiting = Gauge(
            "slipway_intake_failed_deliveries",
            "Pushes marked failed and still within the retention.",
            registry=r,
        )

    def observe(self, stats: QueueStats) -> None:
        """Set the queue gauges from a fresh `QueueStats`."""
        self.waiting.set(stats.queued)
        self.in_flight.set(stats.in_flight)
        self.oldest.set(stats.oldest_age or 0.0)
        self.failed_waiting.set(stats.failed)
        self.unrecorded.set(stats.unrecorded)

    def render(self) -> bytes:
        """Everything, in Prometheus' text format."""
        return generate_latest(self.registry)
