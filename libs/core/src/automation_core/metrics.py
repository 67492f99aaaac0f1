"""Metrics every service exposes, in the process-wide Prometheus registry.

Names follow Prometheus conventions: ``automation_`` prefix, base units, ``_total`` on counters.
Labels are route templates, queue names and routing keys, never ids (a server-named exclusive queue,
``amq.gen-...``, is counted as ``server-named``). A consumer creates every outcome series of its queue at 0
when it starts (:class:`QueueMetrics`), so ``rate()`` and ``increase()`` see the first message.

- ``automation_build_info{service,version}``: constant 1.
- ``automation_http_requests_total{service,method,route,status}``: HTTP requests handled.
- ``automation_http_request_duration_seconds{service,method,route}``: HTTP handling time.
- ``automation_messages_received_total{service,queue}``: deliveries taken from a queue, redeliveries
  included (the R of a queue's RED: received minus finished outcomes is what is in flight or requeued).
- ``automation_messages_consumed_total{service,queue,outcome}``: deliveries finished, by outcome (values in
  :data:`CONSUMED_OUTCOMES`): ``acked`` (handled, or recognised as a duplicate), ``requeued`` (handed
  back to the queue after a transient failure or on shutdown; it is delivered again) and
  ``dead_lettered`` (sent to ``automation.dead``: an invalid message, i.e. a *rejected* one, or a
  message that failed ``AUTOMATION_AMQP_DELIVERY_LIMIT`` times). Retries with backoff are not an
  outcome here: the executor acks the request and schedules the retry itself
  (``automation_executor_retries_total``).
- ``automation_message_handling_duration_seconds{service,queue}``: time from delivery to its outcome.
- ``automation_messages_published_total{service,exchange,routing_key}``: messages confirmed by the broker.
- ``automation_outbox_pending_messages{service}``: outbox rows not yet published.
- ``automation_outbox_oldest_age_seconds{service}``: age of the oldest unsent outbox row (0 when empty).
- ``automation_broker_connected{service}``: 1 while the AMQP connection is open.
- ``automation_database_up{service}``: 1 when the last database check succeeded (the readiness checks
  run on every ``/readyz`` and every ``/metrics`` scrape).
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
#: Outcomes of ``automation_messages_consumed_total``, in the order dashboards list them.
CONSUMED_OUTCOMES = ("acked", "requeued", "dead_lettered")

MESSAGES_RECEIVED = Counter(
    "automation_messages_received",
    "Deliveries taken from a queue, redeliveries included.",
    ["service", "queue"],
)
MESSAGES_CONSUMED = Counter(
    "automation_messages_consumed",
    "Deliveries finished, by outcome (acked, requeued, dead_lettered).",
    ["service", "queue", "outcome"],
)
MESSAGE_DURATION = Histogram(
    "automation_message_handling_duration_seconds",
    "Time from a delivery to its outcome.",
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


class QueueMetrics:
    """The series of one consumed queue, labelled once (a ``labels()`` look-up per message costs more than
    the increment): ``received``, ``duration`` and ``consumed[outcome]`` for every outcome of
    :data:`CONSUMED_OUTCOMES`. Making one creates every series at 0, so ``rate()`` and ``increase()`` see the
    first message: make it when the consumer starts. The shared consumer runner
    (``automation_messaging.Consumer``) and every consumer of its own (job-api's ``automation.dead``) use it.
    """

    def __init__(self, service: str, queue: str) -> None:
        self.received = MESSAGES_RECEIVED.labels(service, queue)
        self.duration = MESSAGE_DURATION.labels(service, queue)
        self.consumed = {outcome: MESSAGES_CONSUMED.labels(service, queue, outcome) for outcome in CONSUMED_OUTCOMES}


def render_metrics() -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
