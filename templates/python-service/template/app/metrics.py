"""Request counts and latencies by route and status, for Prometheus at ``GET /metrics``.

The platform scrapes ``/metrics`` of every running environment and adds the
service, environment, commit and team as labels, so nothing here names them.
Its alert rules read exactly these two series:

- ``http_requests_total{method, route, status}``: every answered request;
- ``http_request_duration_seconds{method, route}``: how long each took.

``route`` is the matched route (``/``, ``/healthz``, ...) or ``other``: never
the raw path, so a scan of random URLs cannot create unbounded series.

prometheus-client comes from requirements.txt. An image built without it
still serves; ``/metrics`` then answers 503 saying why, and the platform's
"metrics missing" alert names the fix.
"""

from __future__ import annotations

import logging

__all__ = ["AVAILABLE", "CONTENT_TYPE", "Metrics"]

log = logging.getLogger("app.metrics")

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
except ImportError:  # requirements.txt was not installed into the image
    AVAILABLE = False
    CONTENT_TYPE = "text/plain; charset=utf-8"
else:
    AVAILABLE = True
    CONTENT_TYPE = CONTENT_TYPE_LATEST

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's request metrics, on a registry of its own (tests run several servers)."""

    def __init__(self, routes: frozenset[str]) -> None:
        self.routes = routes
        if not AVAILABLE:
            log.warning("prometheus-client is not installed: /metrics answers 503")
            return
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def route(self, path: str) -> str:
        """The route label of a request path."""
        return path if path in self.routes else "other"

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        if not AVAILABLE:
            return
        route = self.route(path)
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> tuple[int, bytes]:
        """The status and body of ``GET /metrics``."""
        if not AVAILABLE:
            reason = "prometheus-client is not installed in this image; install requirements.txt"
            return 503, reason.encode("utf-8")
        return 200, generate_latest(self.registry)
