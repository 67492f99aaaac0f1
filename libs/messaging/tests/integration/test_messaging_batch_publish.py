"""Batch publishing (``Publisher.publish_many`` / ``send_many``) and held outbox rows (``insert_prepared``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_core.settings import ServiceSettings
from automation_messaging import Broker, OutboxRelay
from automation_messaging.broker import PUBLISHED_AT_HEADER, RawMessage
from automation_messaging.outbox import delete_rows, insert_prepared
from automation_messaging.topology import COMMANDS, EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(amqp_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="batchpublish",
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
        outbox_poll_seconds=0.2,
    )


@pytest.fixture
async def queue(broker: Broker) -> AsyncIterator[AbstractQueue]:
    channel = await broker.channel()
    declared = await channel.declare_queue(exclusive=True, arguments={"x-max-priority": 9})
    await declared.bind(EVENTS, routing_key="batch.test")
    yield declared
    await channel.close()


def message(
    n: int, *, exchange: str = EVENTS, routing_key: str = "batch.test", priority: int | None = None
) -> RawMessage:
    return RawMessage(
        body=f'{{"n": {n}}}'.encode(),
        exchange=exchange,
        routing_key=routing_key,
        message_id=f"m-{n}-{uuid.uuid4().hex[:6]}",
        message_type="batch.test",
        headers={"x-n": n},
        priority=priority,
    )


async def drain(queue: AbstractQueue, want: int) -> dict[str, AbstractIncomingMessage]:
    got: dict[str, AbstractIncomingMessage] = {}

    async def enough() -> bool:
        while (incoming := await queue.get(no_ack=True, fail=False)) is not None:
            got[str(incoming.message_id)] = incoming
        return len(got) >= want

    await wait_until(enough, timeout=10, what=f"{want} messages")
    return got


async def test_a_batch_arrives_whole_with_its_envelope(broker: Broker, queue: AbstractQueue) -> None:
    batch = [message(n, priority=n % 10) for n in range(300)]
    before = time.time()
    results = await broker.publisher.publish_many(batch)
    after = time.time()
    assert results == [None] * len(batch)
    got = await drain(queue, len(batch))
    assert set(got) == {m.message_id for m in batch}
    for m in batch:
        incoming = got[m.message_id]
        assert incoming.body == m.body
        assert incoming.headers["x-n"] == m.headers["x-n"]
        assert incoming.priority == m.priority
        assert incoming.type == "batch.test"
        assert incoming.content_type == "application/cloudevents+json"
        assert incoming.delivery_mode == 2
        published = incoming.headers[PUBLISHED_AT_HEADER]
        assert isinstance(published, int)
        assert int(before * 1000) <= published <= int(after * 1000) + 1


async def test_batches_sent_back_to_back_are_confirmed_each(broker: Broker, queue: AbstractQueue) -> None:
    batches = [[message(10 * b + n) for n in range(10)] for b in range(20)]
    pending = [await broker.publisher.send_many(batch) for batch in batches]  # no wait between writes
    for confirms in pending:
        assert await confirms == [None] * 10
    got = await drain(queue, 200)
    assert len(got) == 200


async def test_an_unroutable_command_fails_alone(broker: Broker, queue: AbstractQueue) -> None:
    nowhere = message(1, exchange=COMMANDS, routing_key=f"nobody.listens.{uuid.uuid4().hex[:6]}")
    fine = message(2)
    results = await broker.publisher.publish_many([nowhere, fine])
    assert results[0] is not None  # returned by the broker (mandatory): an error, not a silent loss
    assert results[1] is None
    got = await drain(queue, 1)
    assert set(got) == {fine.message_id}
    assert await broker.publisher.publish_many([message(3)]) == [None]  # the channel is still usable


async def test_held_rows_wait_for_their_time_then_any_relay_publishes_them(
    settings: ServiceSettings, broker: Broker, queue: AbstractQueue, fresh_outbox: tuple[AsyncEngine, Table]
) -> None:
    engine, table = fresh_outbox
    held, soon, gone = message(1), message(2), message(3)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        ids = await insert_prepared(
            conn, table, [held, soon, gone], [now + timedelta(hours=1), now + timedelta(seconds=1), now]
        )
    assert set(ids) == {held.message_id, soon.message_id, gone.message_id}
    async with engine.begin() as conn:  # its owner published `gone` itself and clears its row
        assert await delete_rows(conn, table, [ids[gone.message_id]]) == 1
    relay = OutboxRelay(engine, table, broker.publisher, settings)
    await relay.start()
    try:
        got = await drain(queue, 1)
        assert set(got) == {soon.message_id}
        assert got[soon.message_id].priority in (None, 0)
        await asyncio.sleep(0.5)  # several relay polls: the held row stays held
        assert await queue.get(no_ack=True, fail=False) is None
    finally:
        await relay.stop()
    async with engine.connect() as conn:
        left = (await conn.execute(select(table.c.event_id).select_from(table))).scalars().all()
    assert left == [held.message_id]


async def test_held_rows_keep_priority_and_headers(
    settings: ServiceSettings, broker: Broker, queue: AbstractQueue, fresh_outbox: tuple[AsyncEngine, Table]
) -> None:
    engine, table = fresh_outbox
    m = message(7, priority=8)
    async with engine.begin() as conn:
        await insert_prepared(conn, table, [m], [datetime.now(UTC)])
    relay = OutboxRelay(engine, table, broker.publisher, settings)
    await relay.start()
    try:
        got = await drain(queue, 1)
    finally:
        await relay.stop()
    assert got[m.message_id].priority == 8
    assert got[m.message_id].headers["x-n"] == 7
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(table))).scalar_one() == 0


async def test_insert_prepared_refuses_what_it_cannot_map_back(fresh_outbox: tuple[AsyncEngine, Table]) -> None:
    engine, table = fresh_outbox
    twin = message(1)
    async with engine.begin() as conn:
        with pytest.raises(ValueError, match="distinct"):
            await insert_prepared(conn, table, [twin, twin], [datetime.now(UTC)] * 2)
        with pytest.raises(ValueError, match="one available_at"):
            await insert_prepared(conn, table, [twin], [])
        assert await insert_prepared(conn, table, [], []) == {}
