"""Consumer runner against the real broker: ack, requeue, dead-letter with reason, keep consuming."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from automation_contracts import CloudEvent, JobDeleted, build_event
from automation_core.settings import ServiceSettings
from automation_messaging import REASON_HEADER, Broker, DeadLetter, Delivery, RpcClient, RpcConnectionLost, RpcTimeout
from automation_messaging import consumer as consumer_module
from automation_messaging.consumer import Consumer, Handler
from automation_messaging.topology import COMMANDS, DEAD_QUEUE, EVENTS, declare_service_queue
from automation_testing import drop_broker_connections, wait_until

pytestmark = pytest.mark.integration


def job_deleted(**overrides: object) -> CloudEvent:
    data: dict[str, object] = {
        "job_id": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "version": 2,
        "deleted_at": datetime.now(UTC).isoformat(),
    }
    data.update(overrides)
    return build_event("job.deleted", source="/tests/messaging", data=data)


@pytest.fixture
async def broker(amqp_url: str, database_url: str) -> AsyncIterator[Broker]:
    settings = ServiceSettings(
        service_name="msgtest",
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
        amqp_delivery_limit=3,
    )
    b = Broker(settings)
    await b.connect()
    yield b
    await b.close()


async def drain_dead(broker: Broker) -> AsyncIterator[AbstractIncomingMessage]:
    channel = await broker.channel()
    queue = await channel.get_queue(DEAD_QUEUE, ensure=False)
    try:
        while (msg := await queue.get(no_ack=True, fail=False)) is not None:
            yield msg
    finally:
        await channel.close()


async def dead_letters(broker: Broker, expected: int) -> list[AbstractIncomingMessage]:
    found: list[AbstractIncomingMessage] = []

    async def probe() -> bool:
        found.extend([m async for m in drain_dead(broker)])
        return len(found) >= expected

    await wait_until(probe, timeout=15, what=f"{expected} dead letters")
    return found


async def _left_in(broker: Broker, name: str) -> int:
    """How many messages wait in queue ``name`` (deleted afterwards)."""
    channel = await broker.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await channel.close()
    assert count is not None
    return count


def queue_factory(name: str, key: str) -> object:
    async def declare(channel: AbstractChannel) -> AbstractQueue:
        return await declare_service_queue(channel, name, [(EVENTS, key)], queue_type="quorum", delivery_limit=3)

    return declare


async def test_bad_messages_are_dead_lettered_with_reason_and_consumption_goes_on(broker: Broker) -> None:
    handled: list[str] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        handled.append(event.id)

    consumer = Consumer(broker, queue=queue_factory("msgtest.bad", "job.*"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        publisher = broker.publisher
        await publisher.publish_raw(b"{not json", exchange=EVENTS, routing_key="job.deleted")
        invalid = job_deleted(version=0)  # schema says version >= 1
        await publisher.publish(invalid, exchange=EVENTS)
        valid = job_deleted()
        await publisher.publish(valid, exchange=EVENTS)
        await wait_until(lambda: asyncio.sleep(0, valid.id in handled), what="the valid message")
        dead = await dead_letters(broker, 2)
    finally:
        await consumer.stop()
    reasons = sorted(str(m.headers[REASON_HEADER]) for m in dead)
    assert reasons[0].startswith("invalid message:")
    assert "data.version" in " ".join(reasons)
    assert all(m.headers["x-original-queue"] == "msgtest.bad" for m in dead)
    assert handled == [valid.id]


async def test_the_handler_gets_the_model_the_runner_checked(broker: Broker) -> None:
    models: list[object] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        models.append(delivery.model)
        models.append(delivery.parse(event, JobDeleted))

    consumer = Consumer(broker, queue=queue_factory("msgtest.model", "job.deleted"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        event = job_deleted()
        await broker.publisher.publish(event, exchange=EVENTS)
        await wait_until(lambda: asyncio.sleep(0, len(models) == 2), what="the handled message")
    finally:
        await consumer.stop()
    checked, parsed = models
    assert isinstance(checked, JobDeleted)
    assert parsed is checked
    assert str(checked.job_id) == event.data["job_id"]


async def _dead_letter_reason(broker: Broker, queue: str, handler: Handler) -> str:
    """Publish one event to a consumer of ``queue`` with ``handler``; the reason of its dead letter."""
    consumer = Consumer(broker, queue=queue_factory(queue, "job.deleted"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        await broker.publisher.publish(job_deleted(), exchange=EVENTS)
        dead = await dead_letters(broker, 1)
    finally:
        await consumer.stop()
    return str(dead[0].headers[REASON_HEADER])


async def test_failing_handler_is_requeued_then_dead_lettered_at_the_limit(broker: Broker) -> None:
    attempts: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        attempts.append(delivery.delivery_count)
        raise RuntimeError("database is on fire")

    reason = await _dead_letter_reason(broker, "msgtest.fail", handler)
    assert attempts == [0, 1, 2]
    assert "failed 3 times; last error: RuntimeError: database is on fire" in reason


async def test_data_the_database_refuses_is_dead_lettered_at_once(broker: Broker, database_url: str) -> None:
    attempts: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        attempts.append(delivery.delivery_count)
        conn = await asyncpg.connect(database_url)
        try:  # what a handler meets when a message carries a number no integer column takes
            await conn.fetchval("SELECT $1::integer", 2**40)
        finally:
            await conn.close()

    reason = await _dead_letter_reason(broker, "msgtest.refused", handler)
    assert attempts == [0], "the same data would be refused at every try"
    assert reason.startswith("the database refused its data: DataError: invalid input for query argument $1"), reason


async def test_a_message_is_held_while_a_service_its_handler_needs_cannot_be_reached(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is down for longer than the delivery limit's tries would last: the message is held
    and handled once it is back, not requeued (its delivery count stays 0) nor dead-lettered."""
    monkeypatch.setattr(consumer_module, "HOLD_FIRST_PAUSE_SECONDS", 0.01)
    monkeypatch.setattr(consumer_module, "HOLD_MAX_PAUSE_SECONDS", 0.05)
    with socket.socket() as sock:  # a port nothing listens on: connecting is refused, as while PostgreSQL is down
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    calls: list[int] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        calls.append(delivery.delivery_count)
        if len(calls) <= 6:  # twice the delivery limit
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{closed}/postgres", timeout=5)
            await conn.close()

    name = f"msgtest.held.{uuid.uuid4().hex[:6]}"
    consumer = Consumer(broker, queue=queue_factory(name, "job.deleted"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        await broker.publisher.publish(job_deleted(), exchange=EVENTS)
        await wait_until(lambda: asyncio.sleep(0, len(calls) == 7), what="the handling after the outage")
        await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
    assert calls == [0] * 7, "held in the handler, never requeued"
    assert [m async for m in drain_dead(broker)] == []
    assert await _left_in(broker, name) == 0, "acked once handled"


async def test_dead_letter_outcome_and_trace_context(broker: Broker) -> None:
    seen: list[Delivery] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        seen.append(delivery)
        raise DeadLetter("job is unknown")

    consumer = Consumer(broker, queue=queue_factory("msgtest.dl", "job.deleted"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        await broker.publisher.publish(
            job_deleted(), exchange=EVENTS, headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
        )
        dead = await dead_letters(broker, 1)
    finally:
        await consumer.stop()
    assert dead[0].headers[REASON_HEADER] == "job is unknown"
    assert seen[0].headers["traceparent"].startswith("00-" + "a" * 32)
    body = json.loads(dead[0].body)
    assert body["type"] == "job.deleted"


async def test_a_handler_outlives_its_channel_and_the_redelivery_is_acked(broker: Broker, amqp_url: str) -> None:
    """RabbitMQ closes the connection while a handler runs (a restart, a network blip): the handler is
    not cancelled but runs to its end; the message comes back on the reconnected channel, and its
    handler (idempotent, as every handler is) sees the work done and acks it."""
    started, release, first_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    deliveries: list[int] = []
    first: list[str] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        deliveries.append(delivery.delivery_count)
        if len(deliveries) > 1:
            await first_done.wait()  # as the executor does: a redelivery waits for the run in progress
            return
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            first.append("cancelled")
            raise
        first.append("finished")
        first_done.set()

    name = f"msgtest.outlive.{uuid.uuid4().hex[:6]}"
    consumer = Consumer(broker, queue=queue_factory(name, "job.deleted"), handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        await broker.publisher.publish(job_deleted(), exchange=EVENTS)
        await asyncio.wait_for(started.wait(), 10)
        await drop_broker_connections(amqp_url)
        await wait_until(
            lambda: asyncio.sleep(0, len(deliveries) == 2), timeout=30, what="the redelivery after the reconnect"
        )
        assert first == [], "the handler in flight was cancelled when its channel closed"
        release.set()
        await wait_until(lambda: asyncio.sleep(0, first == ["finished"]), what="the first handling's end")
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    assert len(deliveries) == 2, deliveries
    assert await _left_in(broker, name) == 0, "the redelivery was acked"


async def test_request_reply(broker: Broker) -> None:
    async def declare(channel: AbstractChannel) -> AbstractQueue:
        queue = await channel.declare_queue(f"msgtest.rpc.{uuid.uuid4().hex[:6]}", exclusive=True)
        await queue.bind(COMMANDS, routing_key="msgtest.echo")
        return queue

    async def handler(event: CloudEvent, delivery: Delivery) -> CloudEvent:
        return build_event("msgtest.echoed", source="/tests/rpc", data={"echo": event.data})

    consumer = Consumer(broker, queue=declare, handler=handler)
    await consumer.start()
    client = RpcClient(broker)
    await client.start()
    try:
        request = build_event("msgtest.echo", source="/tests/rpc", data={"n": 1})
        replies = await asyncio.gather(*(client.call(request, routing_key="msgtest.echo", timeout=5) for _ in range(5)))
        assert all(r.data == {"echo": {"n": 1}} for r in replies)
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await client.call(request, routing_key="msgtest.nobody-listens", timeout=1)
    finally:
        await client.stop()
        await consumer.stop()
    assert issubclass(RpcTimeout, TimeoutError)


async def test_a_call_whose_connection_drops_fails_at_once_not_at_its_deadline(broker: Broker, amqp_url: str) -> None:
    release = asyncio.Event()
    received: list[str] = []

    async def declare(channel: AbstractChannel) -> AbstractQueue:
        queue = await channel.declare_queue(f"msgtest.rpc-slow.{uuid.uuid4().hex[:6]}", exclusive=True)
        await queue.bind(COMMANDS, routing_key="msgtest.slow")
        return queue

    async def handler(event: CloudEvent, delivery: Delivery) -> CloudEvent:
        received.append(event.id)
        await release.wait()
        return build_event("msgtest.done", source="/tests/rpc", data={})

    consumer = Consumer(broker, queue=declare, handler=handler)
    await consumer.start()
    client = RpcClient(broker)
    await client.start()
    try:
        request = build_event("msgtest.slow", source="/tests/rpc", data={})
        call = asyncio.create_task(client.call(request, routing_key="msgtest.slow", timeout=60))
        await wait_until(lambda: asyncio.sleep(0, bool(received)), what="the request handled")
        started = asyncio.get_running_loop().time()
        await drop_broker_connections(amqp_url)
        with pytest.raises(RpcConnectionLost, match="closed before the reply came"):
            await asyncio.wait_for(call, 10)
        assert asyncio.get_running_loop().time() - started < 10, "not at the 60 s deadline"
    finally:
        release.set()
        await client.stop()
        await consumer.stop()


def durable_server_queue(key: str) -> tuple[str, object]:
    """A server's work queue that outlives a dropped connection (as browser-pool's quorum queue does)."""
    name = f"msgtest.rpc-server.{uuid.uuid4().hex[:6]}"

    async def declare(channel: AbstractChannel) -> AbstractQueue:
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(COMMANDS, routing_key=key)
        return queue

    return name, declare


async def test_a_call_with_a_reply_queue_of_its_own_outlives_a_dropped_connection(
    broker: Broker, amqp_url: str
) -> None:
    """The reply of a request handled while the connection dropped reaches the call: it waits in the
    caller's durable queue until the call's channel is back. The server gets the request twice (its
    first delivery was never acked) and answers both; the call takes one, the other is dropped."""
    key = f"msgtest.survive.{uuid.uuid4().hex[:6]}"
    release = asyncio.Event()
    received: list[str] = []
    name, declare = durable_server_queue(key)

    async def handler(event: CloudEvent, delivery: Delivery) -> CloudEvent:
        received.append(event.id)
        await release.wait()
        return build_event("msgtest.done", source="/tests/rpc", data={"n": event.data})

    consumer = Consumer(broker, queue=declare, handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    reply_queue = f"msgtest.replies.{uuid.uuid4().hex[:6]}"
    client = RpcClient(broker, reply_queue=reply_queue)
    await client.start()
    try:
        request = build_event("msgtest.slow", source="/tests/rpc", data={"n": 7})
        call = asyncio.create_task(client.call(request, routing_key=key, timeout=60))
        await wait_until(lambda: asyncio.sleep(0, bool(received)), what="the request handled")
        await drop_broker_connections(amqp_url)
        await wait_until(
            lambda: asyncio.sleep(0, len(received) == 2), timeout=30, what="the request delivered again after the drop"
        )
        assert not call.done(), "the call failed with its connection"
        release.set()
        reply = await asyncio.wait_for(call, 20)
        assert reply.type == "msgtest.done"
        assert reply.data == {"n": {"n": 7}}
        await asyncio.sleep(0.5)
    finally:
        release.set()
        await client.stop()
        await consumer.stop()
    assert await _left_in(broker, reply_queue) == 0, "the second reply was taken and dropped"
    assert await _left_in(broker, name) == 0, "both deliveries of the request were acked"


@pytest.mark.parametrize(
    ("refusals", "hold", "handlings"),
    [(2, 60.0, 1), (4, 0.3, 2)],
    ids=["held-until-sent", "handed-back-after-the-hold"],
)
async def test_a_reply_that_cannot_be_sent_yet_is_never_acked_away(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, refusals: int, hold: float, handlings: int
) -> None:
    """The request's channel is back but the channel the replies are published on is not yet (seen in
    CI after a dropped connection): the request is held and the reply sent again until it goes, and
    only then is the request acked. Held past ``REPLY_HOLD_MAX_SECONDS``, the request goes back to its
    queue, and its next delivery answers. Never an ack with no reply sent."""
    monkeypatch.setattr(consumer_module, "REPLY_HOLD_MAX_SECONDS", hold)
    key = f"msgtest.held-reply.{uuid.uuid4().hex[:6]}"
    name, declare = durable_server_queue(key)
    handled: list[str] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> CloudEvent:
        handled.append(event.id)
        return build_event("msgtest.done", source="/tests/rpc", data={})

    publish = broker.publisher.publish
    refused: list[str] = []

    async def publish_when_restored(event: CloudEvent, **kwargs: Any) -> None:
        if kwargs.get("exchange") == "" and len(refused) < refusals:
            refused.append(event.id)
            raise aiormq.exceptions.ChannelInvalidStateError("the publishing channel is being restored")
        await publish(event, **kwargs)

    monkeypatch.setattr(broker.publisher, "publish", publish_when_restored)
    consumer = Consumer(broker, queue=declare, handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    client = RpcClient(broker, reply_queue=f"msgtest.replies.{uuid.uuid4().hex[:6]}")
    await client.start()
    try:
        reply = await client.call(
            build_event("msgtest.held", source="/tests/rpc", data={}), routing_key=key, timeout=15
        )
        assert reply.type == "msgtest.done"
        assert len(refused) == refusals
        assert len(handled) >= handlings
        if hold > 10:
            assert len(handled) == 1, "held, not handed back"
    finally:
        await client.stop()
        await consumer.stop()
    assert await _left_in(broker, name) == 0


async def test_a_call_made_while_the_connection_is_down_is_published_when_it_is_back(
    broker: Broker, amqp_url: str
) -> None:
    key = f"msgtest.later.{uuid.uuid4().hex[:6]}"
    received: list[str] = []
    name, declare = durable_server_queue(key)

    async def handler(event: CloudEvent, delivery: Delivery) -> CloudEvent:
        received.append(event.id)
        return build_event("msgtest.done", source="/tests/rpc", data={})

    consumer = Consumer(broker, queue=declare, handler=handler)  # type: ignore[arg-type]
    await consumer.start()
    client = RpcClient(broker, reply_queue=f"msgtest.replies.{uuid.uuid4().hex[:6]}")
    await client.start()
    try:
        await drop_broker_connections(amqp_url)
        calls = [client.call(build_event("msgtest.later", source="/tests/rpc", data={}), routing_key=key, timeout=30)]
        replies = await asyncio.wait_for(asyncio.gather(*calls), 40)
        assert [r.type for r in replies] == ["msgtest.done"]
        assert len(received) == 1
    finally:
        await client.stop()
        await consumer.stop()
    assert await _left_in(broker, name) == 0


async def test_a_transient_refusal_at_start_is_retried_on_a_fresh_channel(broker: Broker) -> None:
    """The first attempt's channel is closed under it (as when RabbitMQ answers ``basic.consume`` on a
    quorum queue still starting with ``INTERNAL_ERROR``); the consumer starts on the second and consumes."""
    declared: list[AbstractChannel] = []
    declare_real = queue_factory("msgtest.retry", "job.deleted")

    async def declare(channel: AbstractChannel) -> AbstractQueue:
        declared.append(channel)
        queue = await declare_real(channel)  # type: ignore[operator]
        if len(declared) == 1:
            await channel.close()
        return queue  # type: ignore[no-any-return]

    handled: list[str] = []

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        handled.append(event.id)

    consumer = Consumer(broker, queue=declare, handler=handler)
    await consumer.start(delay=0.01)
    try:
        event = job_deleted()
        await broker.publisher.publish(event, exchange=EVENTS)
        await wait_until(lambda: asyncio.sleep(0, handled == [event.id]), what="the message consumed after the retry")
    finally:
        await consumer.stop()
    assert len(declared) == 2
    assert declared[0] is not declared[1]


async def test_a_refusal_no_retry_can_change_is_raised_at_once(broker: Broker) -> None:
    name = f"msgtest.inequivalent.{uuid.uuid4().hex[:6]}"
    channel = await broker.channel()
    await channel.declare_queue(name, durable=True)  # classic: the consumer's quorum declaration is refused
    calls: list[int] = []

    async def declare(ch: AbstractChannel) -> AbstractQueue:
        calls.append(1)
        return await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

    async def handler(event: CloudEvent, delivery: Delivery) -> None:
        raise AssertionError("nothing is consumed")

    try:
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await Consumer(broker, queue=declare, handler=handler).start(delay=0.01)
        assert calls == [1]
    finally:
        await channel.queue_delete(name)
        await channel.close()
