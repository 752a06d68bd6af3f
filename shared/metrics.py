"""Prometheus metrics shared by every part (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "lienthong_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "lienthong_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_PUBLISHED = Counter("lienthong_outbox_published_total", "events published by the relay", ["service"])
# With several worker processes (shared.workers) a gauge is the value the newest live writer set:
# every worker measures the same outbox and the same queues.
OUTBOX_PENDING = Gauge(
    "lienthong_outbox_pending", "events waiting in the outbox", ["service"], multiprocess_mode="livemostrecent"
)
EVENTS_HANDLED = Counter(
    "lienthong_events_handled_total", "events handled by consumers", ["consumer", "outcome"]
)
DEAD_LETTERS = Gauge(
    "lienthong_bus_dead_letters",
    "messages waiting in a consumer's dead-letter queue",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
