"""Prometheus metrics of the service, with ``prometheus_client`` (one registry per app)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: endpoints with their own label; every other path is counted as "other" (bounded label set)
ENDPOINTS = ("/", "/healthz", "/metrics", "/v1/models", "/v1/purify", "/v1/classify", "/v1/attack")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's metrics in a registry of their own.

    Attributes:
        registry: the collector registry ``GET /metrics`` exposes.
        requests: ``srdefense_requests_total{endpoint, status}``.
        latency: ``srdefense_request_duration_seconds{endpoint}``.
        batch_size: ``srdefense_batch_size{kind}`` (images per worker batch).
        batch_seconds: ``srdefense_batch_duration_seconds{kind}``.
        queue_length: ``srdefense_queue_length`` (jobs waiting for the worker).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_length: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "srdefense_requests",
            "HTTP requests by endpoint and status",
            ("endpoint", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "srdefense_request_duration_seconds",
            "HTTP request latency by endpoint",
            ("endpoint",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "srdefense_batch_size",
            "images per worker batch, by kind of work",
            ("kind",),
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "srdefense_batch_duration_seconds",
            "compute time per worker batch, by kind of work",
            ("kind",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "srdefense_queue_length", "jobs waiting for the batch worker", registry=self.registry
        )
        self.queue_length.set_function(queue_length)

    @staticmethod
    def endpoint_label(path: str) -> str:
        """The ``endpoint`` label of a request path."""
        return path if path in ENDPOINTS else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        endpoint = self.endpoint_label(path)
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        """Record one worker batch."""
        self.batch_size.labels(kind=kind).observe(size)
        self.batch_seconds.labels(kind=kind).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
