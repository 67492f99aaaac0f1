"""The automation.dead consumer acks what it stored and requeues (never dead-letters) what it could not,
and reports its queue as every consumer does (received, outcomes from 0, handling time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelInvalidStateError
from prometheus_client import REGISTRY

from automation_job_api.dead_letter_consumer import DeadLetterConsumer
from automation_job_api.domain.dead_letters import IncomingLetter
from automation_job_api.settings import JobApiSettings
from automation_messaging import Broker


class FakeMessage:
    """The parts of an incoming AMQP message the consumer reads, and what it did with it."""

    def __init__(self, body: bytes, headers: dict[str, Any], *, redelivered: bool = False) -> None:
        self.body = body
        self.headers = headers
        self.routing_key = "run.requested"
        self.message_id = "m-1"
        self.content_type = "application/octet-stream"
        self.type = None
        self.timestamp = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        self.redelivered = redelivered
        self.outcomes: list[str] = []

    async def ack(self) -> None:
        self.outcomes.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.outcomes.append("requeue" if requeue else "drop")


class FlakyStore:
    """Fails the first ``failures`` stores, like a database that is down and then back."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stored: list[IncomingLetter] = []

    async def store(self, letter: IncomingLetter) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is down")
        self.stored.append(letter)
        return True


def _consumer(store: FlakyStore) -> DeadLetterConsumer:
    settings = JobApiSettings(env="development", jwt_secret="x" * 32, dead_letters_retry_max_seconds=0.01)
    return DeadLetterConsumer(Broker(settings), store, settings)


async def test_a_stored_letter_is_acked_whatever_its_body() -> None:
    store = FlakyStore(failures=0)
    message = FakeMessage(b"\xff not a cloud event", {"x-dead-letter-reason": "poison"})
    await _consumer(store).handle(cast(AbstractIncomingMessage, message))
    assert message.outcomes == ["ack"]
    assert [(x.body, x.origin.reason) for x in store.stored] == [(b"\xff not a cloud event", "poison")]


async def test_a_letter_that_cannot_be_stored_is_requeued_until_it_is() -> None:
    store = FlakyStore(failures=2)
    consumer = _consumer(store)
    first = FakeMessage(b"{}", {})
    await consumer.handle(cast(AbstractIncomingMessage, first))
    redelivered = FakeMessage(b"{}", {"x-delivery-count": 1}, redelivered=True)
    await consumer.handle(cast(AbstractIncomingMessage, redelivered))
    again = FakeMessage(b"{}", {"x-delivery-count": 2}, redelivered=True)
    await consumer.handle(cast(AbstractIncomingMessage, again))
    assert (first.outcomes, redelivered.outcomes, again.outcomes) == (["requeue"], ["requeue"], ["ack"])
    assert len(store.stored) == 1


class FakeQueue:
    async def bind(self, exchange: str, routing_key: str) -> None:
        return None

    async def consume(self, callback: Any) -> str:
        return "ctag-1"


class FakeChannel:
    async def declare_queue(self, name: str, **_: Any) -> FakeQueue:
        return FakeQueue()


class FakeBroker:
    async def channel(self, prefetch: int | None = None) -> FakeChannel:
        return FakeChannel()


def queue_sample(service: str, name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "queue": "automation.dead", **labels})


def queue_series(service: str) -> dict[str, float | None]:
    series = {
        f"consumed_{outcome}": queue_sample(service, "automation_messages_consumed_total", outcome=outcome)
        for outcome in ("acked", "requeued", "dead_lettered")
    }
    series["received"] = queue_sample(service, "automation_messages_received_total")
    series["handled"] = queue_sample(service, "automation_message_handling_duration_seconds_count")
    return series


async def test_the_queue_reports_every_series_at_zero_from_the_start() -> None:
    service = "job-api-dead-start"
    settings = JobApiSettings(env="development", jwt_secret="x" * 32, service_name=service)
    consumer = DeadLetterConsumer(cast(Broker, FakeBroker()), FlakyStore(failures=0), settings)
    assert set(queue_series(service).values()) == {None}
    await consumer.start()
    assert queue_series(service) == {
        "consumed_acked": 0.0,
        "consumed_requeued": 0.0,
        "consumed_dead_lettered": 0.0,
        "received": 0.0,
        "handled": 0.0,
    }


async def test_each_delivery_is_received_handled_and_counted_by_its_outcome() -> None:
    service = "job-api-dead-outcomes"
    settings = JobApiSettings(
        env="development", jwt_secret="x" * 32, dead_letters_retry_max_seconds=0.01, service_name=service
    )
    consumer = DeadLetterConsumer(Broker(settings), FlakyStore(failures=1), settings)
    await consumer.handle(cast(AbstractIncomingMessage, FakeMessage(b"{}", {})))
    await consumer.handle(cast(AbstractIncomingMessage, FakeMessage(b"{}", {"x-delivery-count": 1})))
    assert queue_series(service) == {
        "consumed_acked": 1.0,
        "consumed_requeued": 1.0,
        "consumed_dead_lettered": 0.0,
        "received": 2.0,
        "handled": 2.0,
    }


async def test_an_ack_the_closed_channel_refused_is_counted_requeued() -> None:
    service = "job-api-dead-closed"
    settings = JobApiSettings(env="development", jwt_secret="x" * 32, service_name=service)
    message = FakeMessage(b"{}", {})

    async def closed() -> None:
        raise ChannelInvalidStateError("the channel is closed")

    message.ack = closed  # type: ignore[method-assign]
    await DeadLetterConsumer(Broker(settings), FlakyStore(failures=0), settings).handle(
        cast(AbstractIncomingMessage, message)
    )
    assert queue_series(service)["consumed_requeued"] == 1.0
    assert queue_series(service)["consumed_acked"] == 0.0
