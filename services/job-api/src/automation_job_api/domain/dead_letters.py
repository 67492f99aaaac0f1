"""Dead letters: what a message on ``automation.dead`` says about where it came from and why.

Two kinds of dead letter arrive, and both are understood:

- dead-lettered by a service's consumer runner (``automation_messaging.Consumer``): headers
  ``x-original-exchange``, ``x-original-queue``, ``x-original-routing-key``, ``x-dead-letter-reason``,
  ``x-dead-lettered-at`` and ``x-dead-lettered-by``;
- dead-lettered by RabbitMQ itself (a queue's delivery limit, a TTL, a reject): its ``x-death``
  header, whose first entry is the latest death (``queue``, ``exchange``, ``routing-keys``,
  ``reason``, ``time``).

When a message carries both (the runner copies earlier headers), the later death wins. Bodies are
never parsed: a dead letter may be anything, CloudEvent or not. Header values are made JSON-safe for
storage (timestamps as ISO text, bytes as text, or ``base64:...`` when not UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from automation_contracts.storable import storable_text

REASON_HEADER = "x-dead-letter-reason"
STRIPPED_PREFIXES = ("x-dead-letter", "x-original-", "x-first-death-", "x-last-death-")
STRIPPED_HEADERS = frozenset({"x-death", "x-delivery-count"})
UNKNOWN = "unknown"


def json_safe(value: Any) -> Any:
    """An AMQP header value as JSON PostgreSQL accepts (no NUL characters, no NaN)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return json_safe(_scalar_text(value)) if not isinstance(value, float) or not math.isfinite(value) else value


def _scalar_text(value: Any) -> str:
    """Text of a header value JSON has no type for (decimals, timestamps, bytes, the rest)."""
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    return str(value)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    return storable_text(value) if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    text = _text(value)
    if text:
        try:
            return _aware(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a dead letter was dead-lettered from, why, when and by whom."""

    exchange: str
    queue: str
    routing_key: str
    reason: str
    dead_lettered_at: datetime
    dead_lettered_by: str


def _latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None


def origin_of(headers: Mapping[str, Any], *, routing_key: str, fallback_time: datetime) -> Origin:
    """The origin the headers describe (see the module doc); ``fallback_time`` when they name no time."""
    runner_time = _time(headers.get("x-dead-lettered-at"))
    death = _latest_death(headers)
    death_time = _time(death.get("time")) if death is not None else None
    by_runner = headers.get("x-original-queue") is not None or headers.get(REASON_HEADER) is not None
    if death is not None and (not by_runner or (death_time and runner_time and death_time > runner_time)):
        keys = death.get("routing-keys")
        first_key = _text(keys[0]) if isinstance(keys, list | tuple) and keys else None
        return Origin(
            exchange=_text(death.get("exchange")) or "",
            queue=_text(death.get("queue")) or "",
            routing_key=first_key if first_key is not None else routing_key,
            reason=_text(death.get("reason")) or UNKNOWN,
            dead_lettered_at=death_time or fallback_time,
            dead_lettered_by="rabbitmq",
        )
    return Origin(
        exchange=_text(headers.get("x-original-exchange")) or "",
        queue=_text(headers.get("x-original-queue")) or "",
        routing_key=_text(headers.get("x-original-routing-key")) or routing_key,
        reason=_text(headers.get(REASON_HEADER)) or UNKNOWN,
        dead_lettered_at=runner_time or fallback_time,
        dead_lettered_by=_text(headers.get("x-dead-lettered-by")) or UNKNOWN,
    )


@dataclass(frozen=True, slots=True)
class IncomingLetter:
    """One message taken off ``automation.dead``, ready to store."""

    message_id: str
    routing_key: str
    origin: Origin
    headers: dict[str, Any]
    body: bytes
    content_type: str | None
    message_type: str | None
    received_at: datetime


def letter_from(
    *,
    body: bytes,
    headers: Mapping[str, Any] | None,
    routing_key: str | None,
    message_id: str | None,
    content_type: str | None,
    message_type: str | None,
    timestamp: datetime | None,
    received_at: datetime,
) -> IncomingLetter:
    """The letter of one delivery. A message without an id gets ``sha256:<hex of its body>``, so a
    redelivery of it is still recognised; without any time header its AMQP timestamp (else the time
    it was received) stands for when it was dead-lettered."""
    raw_headers = dict(headers or {})
    key = storable_text(routing_key or "")
    origin = origin_of(raw_headers, routing_key=key, fallback_time=_aware(timestamp) if timestamp else received_at)
    return IncomingLetter(
        message_id=storable_text(message_id) if message_id else "sha256:" + hashlib.sha256(body).hexdigest(),
        routing_key=key,
        origin=origin,
        headers=json_safe(raw_headers),
        body=body,
        content_type=storable_text(content_type) if content_type is not None else None,
        message_type=storable_text(message_type) if message_type is not None else None,
        received_at=received_at,
    )


def requeue_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The stored headers minus what dead-lettering added (``x-dead-letter*``, ``x-original-*``, ``x-death``...)."""
    return {
        name: value
        for name, value in headers.items()
        if name not in STRIPPED_HEADERS and not name.startswith(STRIPPED_PREFIXES)
    }


def body_text(body: bytes) -> str | None:
    """The body as text when it is UTF-8 (JSON, CloudEvents, plain text); None for other bytes."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def body_base64(body: bytes) -> str:
    """The body in standard base64."""
    return base64.b64encode(body).decode("ascii")
