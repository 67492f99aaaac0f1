"""Dead letters: where they came from (runner headers or RabbitMQ's x-death), storage-safe headers, requeue headers."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

from automation_job_api.domain.dead_letters import (
    body_base64,
    body_text,
    json_safe,
    letter_from,
    origin_of,
    requeue_headers,
)

T_RUNNER = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
T_BROKER = datetime(2026, 11, 23, 12, 0, 9)  # aio-pika hands x-death times over naive, in UTC
T_FALLBACK = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)

RUNNER = {
    "x-dead-letter-reason": "invalid message: not JSON",
    "x-original-exchange": "automation.events",
    "x-original-routing-key": "execution.started",
    "x-original-queue": "job-api.execution-events",
    "x-dead-lettered-at": T_RUNNER.isoformat(),
    "x-dead-lettered-by": "job-api",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}
DEATH = {
    "count": 1,
    "reason": "delivery_limit",
    "queue": "executor.runs",
    "time": T_BROKER,
    "exchange": "automation.commands",
    "routing-keys": ["run.requested"],
}


def test_the_consumer_runners_headers_name_the_origin() -> None:
    origin = origin_of(RUNNER, routing_key="execution.started", fallback_time=T_FALLBACK)
    assert (origin.exchange, origin.queue, origin.routing_key) == (
        "automation.events",
        "job-api.execution-events",
        "execution.started",
    )
    assert (origin.reason, origin.dead_lettered_at, origin.dead_lettered_by) == (
        "invalid message: not JSON",
        T_RUNNER,
        "job-api",
    )


def test_a_message_rabbitmq_dead_lettered_is_read_from_x_death() -> None:
    origin = origin_of({"x-death": [DEATH]}, routing_key="run.requested", fallback_time=T_FALLBACK)
    assert (origin.exchange, origin.queue, origin.routing_key, origin.reason) == (
        "automation.commands",
        "executor.runs",
        "run.requested",
        "delivery_limit",
    )
    assert origin.dead_lettered_at == T_BROKER.replace(tzinfo=UTC)
    assert origin.dead_lettered_by == "rabbitmq"


def test_with_both_the_later_death_wins() -> None:
    copied_earlier_death = {**RUNNER, "x-death": [{**DEATH, "time": datetime(2026, 11, 23, 11, 0)}]}
    assert origin_of(copied_earlier_death, routing_key="k", fallback_time=T_FALLBACK).queue == (
        "job-api.execution-events"
    )
    later_death = {**RUNNER, "x-death": [DEATH]}
    assert origin_of(later_death, routing_key="k", fallback_time=T_FALLBACK).queue == "executor.runs"


def test_a_message_with_no_headers_keeps_its_routing_key_and_the_fallback_time() -> None:
    origin = origin_of({}, routing_key="something.odd", fallback_time=T_FALLBACK)
    assert (origin.exchange, origin.queue, origin.routing_key, origin.reason) == ("", "", "something.odd", "unknown")
    assert origin.dead_lettered_at == T_FALLBACK


def test_a_letter_without_message_id_is_named_by_its_body_and_dated_by_its_timestamp() -> None:
    body = b"\x00\xffbinary"
    stamp = datetime(2026, 11, 23, 12, 30)
    letter = letter_from(
        body=body,
        headers=None,
        routing_key=None,
        message_id=None,
        content_type=None,
        message_type=None,
        timestamp=stamp,
        received_at=T_FALLBACK,
    )
    assert letter.message_id == "sha256:" + hashlib.sha256(body).hexdigest()
    assert letter.origin.dead_lettered_at == stamp.replace(tzinfo=UTC)
    assert (letter.routing_key, letter.headers, letter.body) == ("", {}, body)


def test_header_values_become_json_postgresql_stores() -> None:
    headers = {
        "when": datetime(2026, 1, 2, 3, 4, 5),
        "bytes": b"text",
        "binary": b"\xff\x00",
        "nul": "a\x00b",
        "nested": {"list": [1, 2.5, Decimal("1.5"), float("nan"), None, True]},
    }
    safe = json_safe(headers)
    assert safe == {
        "when": "2026-01-02T03:04:05+00:00",
        "bytes": "text",
        "binary": "base64:/wA=",
        "nul": "a\ufffdb",
        "nested": {"list": [1, 2.5, "1.5", "nan", None, True]},
    }
    json.dumps(safe, allow_nan=False)


def test_requeue_drops_what_dead_lettering_added_and_keeps_the_rest() -> None:
    headers = {
        **RUNNER,
        "x-death": [DEATH],
        "x-first-death-queue": "q",
        "x-last-death-reason": "r",
        "x-delivery-count": 3,
        "x-custom": "kept",
    }
    assert requeue_headers(headers) == {"traceparent": RUNNER["traceparent"], "x-custom": "kept"}


def test_bodies_are_shown_as_text_when_they_are_utf8_and_always_as_base64() -> None:
    assert body_text(b'{"a": "\xc3\xbc"}') == '{"a": "\u00fc"}'
    assert body_text(b"\xff\xfe") is None
    assert body_base64(b"\xff\xfe") == "//4="


def test_text_postgresql_would_refuse_is_made_storable() -> None:
    letter = letter_from(
        body=b"{}",
        headers={"x-original-queue": b"q\x00", "x-dead-letter-reason": "bad\x00"},
        routing_key="k\x00",
        message_id="id\x00",
        content_type="text/plain\x00",
        message_type=None,
        timestamp=None,
        received_at=T_FALLBACK,
    )
    assert (letter.message_id, letter.routing_key, letter.content_type) == ("id\ufffd", "k\ufffd", "text/plain\ufffd")
    assert (letter.origin.queue, letter.origin.reason) == ("q\ufffd", "bad\ufffd")
    assert letter.origin.dead_lettered_at == T_FALLBACK
