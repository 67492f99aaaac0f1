"""The automation.dead consumer acks what it stored and requeues (never dead-letters) what it could not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

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
