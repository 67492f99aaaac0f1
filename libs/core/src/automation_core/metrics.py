"""Metrics every service exposes, in the process-wide Prometheus registry.

Names follow Prometheus conventions: ``automation_`` prefix, base units, ``_total`` on counters.
Labels are route templates, queue names and routing keys, never ids.

- ``automation_build_info{service,version}``: constant 1.
- ``automation_http_requests_total{service,method,route,status}``: HTTP requests handled.
- ``automation_http_request_duration_seconds{service,method,route}``: HTTP handling time.
- ``automation_messages_consumed_total{service,queue,outcome}``: messages consumed, by outcome
  (``acked``, ``retried``, ``dead_lettered``, ``requeued``).
- ``automation_message_handling_duration_seconds{service,queue}``: time spent in a message handler.
- ``automation_messages_published_total{service,exchange,routing_key}``: messages confirmed by the broker.
- ``automation_outbox_pending_messages{service}``: outbox rows not yet published.
- ``automation_outbox_oldest_age_seconds{service}``: age of the oldest unsent outbox row (0 when empty).
- ``automation_broker_connected{service}``: 1 while the AMQP connection is open.
- ``automation_database_up{service}``: 1 when the last database check succeeded.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BUILD_INFO = Gauge("automation_build_info", "Build information; constant 1.", ["service", "version"])
HTTP_REQUESTS = Counter("automation_http_requests", "HTTP requests handled.", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram(
    "automation_http_request_duration_seconds",
    "HTTP request handling time.",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
MESSAGES_CONSUMED = Counter(
    "automation_messages_consumed", "Messages consumed, by outcome.", ["service", "queue", "outcome"]
)
MESSAGE_DURATION = Histogram(
    "automation_message_handling_duration_seconds",
    "Time spent handling one message.",
    ["service", "queue"],
    buckets=LATENCY_BUCKETS,
)
MESSAGES_PUBLISHED = Counter(
    "automation_messages_published",
    "Messages published and confirmed by the broker.",
    ["service", "exchange", "routing_key"],
)
OUTBOX_PENDING = Gauge("automation_outbox_pending_messages", "Outbox rows not yet published.", ["service"])
OUTBOX_OLDEST_AGE = Gauge("automation_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row.", ["service"])
BROKER_CONNECTED = Gauge("automation_broker_connected", "1 while the AMQP connection is open.", ["service"])
DATABASE_UP = Gauge("automation_database_up", "1 when the last database check succeeded.", ["service"])


def render_metrics() -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
