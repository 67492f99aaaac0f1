"""Delay queues on ``automation.retry``: quorum, dead-lettering at least once, and the classic queues
of earlier versions replaced when empty."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue

from automation_core.settings import ServiceSettings
from automation_messaging import Broker
from automation_messaging.broker import RawMessage
from automation_messaging.topology import (
    COMMANDS,
    QUORUM_DELAY_ARGUMENTS,
    RETRY,
    declare_delay_queue,
    delay_queue_arguments,
)

pytestmark = pytest.mark.integration

DELAY_MS = 300


@pytest.fixture
def settings(amqp_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(service_name="delayqueues", env="development", amqp_url=amqp_url, database_url=database_url)


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[AbstractChannel]:
    opened = await broker.channel()
    yield opened
    await opened.close()


@pytest.fixture
def key() -> str:
    """The test's own target routing key, so its delay queues are its own (the vhost is the module's)."""
    return f"delayed.{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def target(channel: AbstractChannel, key: str) -> AbstractQueue:
    """Where the delayed messages end: a quorum queue on ``automation.commands``."""
    queue = await channel.declare_queue(
        f"target-{uuid.uuid4().hex[:6]}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(COMMANDS, routing_key=key)
    return queue


def delayed(n: int, route: str) -> RawMessage:
    return RawMessage(
        body=f'{{"n": {n}}}'.encode(),
        exchange=RETRY,
        routing_key=route,
        message_id=f"d-{n}-{uuid.uuid4().hex[:6]}",
        message_type="delayed.test",
        headers={},
    )


async def received(queue: AbstractQueue, want: int, timeout: float = 10.0) -> set[str]:
    got: set[str] = set()
    async with asyncio.timeout(timeout):
        while len(got) < want:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            elif message.message_id is not None:
                got.add(message.message_id)
    return got


async def queue_arguments(broker: Broker, name: str, arguments: dict[str, object]) -> bool:
    """Whether ``name`` exists with exactly these arguments (a declaration with others is refused, and
    closes its channel: a channel of its own)."""
    async with broker.connection.channel() as channel:
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            return False
    return True


async def test_a_delay_queue_is_quorum_and_hands_its_messages_on_after_the_delay(
    broker: Broker, channel: AbstractChannel, target: AbstractQueue, key: str
) -> None:
    route = await declare_delay_queue(broker.connection, delay_ms=DELAY_MS, target_exchange=COMMANDS, target_key=key)
    assert route == f"{RETRY}.{key}.{DELAY_MS}ms"
    args = delay_queue_arguments(DELAY_MS, COMMANDS, key, "quorum")
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert await queue_arguments(broker, route, args), "declared quorum, dead-lettering at least once"
    messages = [delayed(n, route) for n in range(20)]
    assert await broker.publisher.publish_many(messages) == [None] * 20
    assert await target.get(no_ack=True, fail=False) is None, "not before the delay"
    assert await received(target, 20) == {m.message_id for m in messages}
    again = await declare_delay_queue(broker.connection, delay_ms=DELAY_MS, target_exchange=COMMANDS, target_key=key)
    assert again == route, "declaring it again is a no-op"


async def test_an_empty_classic_delay_queue_of_an_earlier_version_becomes_quorum(
    broker: Broker, channel: AbstractChannel, target: AbstractQueue, key: str
) -> None:
    name = f"{RETRY}.{key}.{DELAY_MS}ms"
    classic = {
        k: v
        for k, v in delay_queue_arguments(DELAY_MS, COMMANDS, key, "quorum").items()
        if k not in QUORUM_DELAY_ARGUMENTS
    }
    await channel.declare_queue(name, durable=True, arguments=classic)
    route = await declare_delay_queue(broker.connection, delay_ms=DELAY_MS, target_exchange=COMMANDS, target_key=key)
    assert await queue_arguments(broker, route, delay_queue_arguments(DELAY_MS, COMMANDS, key, "quorum"))
    message = delayed(1, route)
    assert await broker.publisher.publish_many([message]) == [None]
    assert await received(target, 1) == {message.message_id}


async def test_a_classic_delay_queue_holding_messages_is_kept_until_it_is_empty(
    broker: Broker, channel: AbstractChannel, target: AbstractQueue, key: str
) -> None:
    name = f"{RETRY}.{key}.5000ms"
    classic = {
        k: v for k, v in delay_queue_arguments(5000, COMMANDS, key, "quorum").items() if k not in QUORUM_DELAY_ARGUMENTS
    }
    queue = await channel.declare_queue(name, durable=True, arguments=classic)
    await queue.bind(RETRY, routing_key=name)
    waiting = delayed(1, name)
    assert await broker.publisher.publish_many([waiting]) == [None]
    route = await declare_delay_queue(broker.connection, delay_ms=5000, target_exchange=COMMANDS, target_key=key)
    assert route == name
    assert await queue_arguments(broker, name, classic), "kept classic: deleting it would lose its message"
    assert await received(target, 1, timeout=15) == {waiting.message_id}, "its message still goes on"
    await declare_delay_queue(broker.connection, delay_ms=5000, target_exchange=COMMANDS, target_key=key)
    assert await queue_arguments(broker, name, delay_queue_arguments(5000, COMMANDS, key, "quorum")), (
        "replaced once empty"
    )


async def test_a_retry_no_queue_takes_is_an_error_for_its_publisher(broker: Broker) -> None:
    nowhere = delayed(1, f"{RETRY}.nobody.{uuid.uuid4().hex[:6]}")
    [result] = await broker.publisher.publish_many([nowhere])
    assert result is not None, "returned (mandatory): the outbox tries it again"
