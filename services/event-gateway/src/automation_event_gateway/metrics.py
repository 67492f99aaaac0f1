"""Domain metrics of the event-gateway (the HTTP, consumer and outbox metrics come from the libs).

- ``automation_events_ingested_total{type,source_kind}``: valid events received, new or duplicate,
  by ingress (``source_kind``: ``http`` for ``POST /api/v1/events``, ``amqp`` for what the history
  consumer sees on ``automation.events``). ``type`` is user-controlled, so its cardinality is capped:
  platform types and registered types keep their name, every other type is counted as ``other``.
- ``automation_events_rejected_total{reason}``: submissions refused (one per HTTP request, a whole batch
  counting once, or per consumed message the history cannot keep), by
  :class:`~automation_event_gateway.domain.errors.RejectReason` (``malformed``, ``invalid_envelope``,
  ``invalid_data``, ``forbidden_type``, ``unstorable``, ``too_large``, ``unsupported_media_type``).
  Messages the consumer runner dead-letters before the gateway sees them (an invalid envelope) are counted
  by ``automation_messages_consumed_total{outcome="dead_lettered"}``.
- ``automation_events_stored_total{origin}``: events newly written to the history (``http`` or ``amqp``;
  duplicates are not counted).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from prometheus_client import Counter

from automation_event_gateway.domain.envelope import PLATFORM_TYPES
from automation_event_gateway.domain.errors import RejectReason

OTHER_TYPE = "other"
SOURCE_KINDS = ("http", "amqp")

EVENTS_INGESTED = Counter(
    "automation_events_ingested",
    "Valid events received, new or duplicate, by type (platform and registered types by name, others as 'other').",
    ["type", "source_kind"],
)
EVENTS_REJECTED = Counter("automation_events_rejected", "Event submissions refused, by reason.", ["reason"])
EVENTS_STORED = Counter("automation_events_stored", "Events newly written to the history, by origin.", ["origin"])

for _reason in RejectReason:
    EVENTS_REJECTED.labels(_reason.value)
for _kind in SOURCE_KINDS:
    EVENTS_STORED.labels(_kind)


def type_label(event_type: str, registered: Collection[str]) -> str:
    """The ``type`` label value: the type itself when the platform owns it or it is registered, else ``other``."""
    if event_type in PLATFORM_TYPES or event_type in registered:
        return event_type
    return OTHER_TYPE


def count_ingested(event_types: Iterable[str], registered: Collection[str], source_kind: str) -> None:
    """Count valid events received through one ingress."""
    for event_type in event_types:
        EVENTS_INGESTED.labels(type_label(event_type, registered), source_kind).inc()


def count_rejected(reason: RejectReason) -> None:
    EVENTS_REJECTED.labels(reason.value).inc()


def count_stored(origin: str, count: int = 1) -> None:
    if count:
        EVENTS_STORED.labels(origin).inc(count)
