"""The fire dispatcher: committed fires go out at their time (never before), their outbox rows are cleared
after the confirms, and what it cannot publish in time stays in the outbox for the relays."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_messaging.broker import RawMessage
from automation_messaging.outbox import insert_prepared
from automation_messaging.topology import EVENTS
from automation_scheduler.dispatch import Dispatch, FireDispatcher
from automation_scheduler.wake import WakeSignal
from automation_testing import wait_until

pytestmark = pytest.mark.integration
ROUTING_KEY = "dispatch.test"


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[AbstractQueue]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.declare_exchange(EVENTS, aio_pika.ExchangeType.TOPIC, durable=True)
    declared = await channel.declare_queue(exclusive=True)
    await declared.bind(EVENTS, routing_key=ROUTING_KEY)
    yield declared
    await connection.close()


async def committed(engine: AsyncEngine, table: Table, dues: list[float], *, lease: float = 5.0) -> list[Dispatch]:
    """Outbox rows for messages due at ``dues`` (loop clock), as the fire loop writes them."""
    messages = [
        RawMessage(body=b"{}", exchange=EVENTS, routing_key=ROUTING_KEY, message_id=str(uuid.uuid4()), message_type="t")
        for _ in dues
    ]
    now, wall = asyncio.get_running_loop().time(), datetime.now(UTC)
    held = [datetime.fromtimestamp(wall.timestamp() + (due - now) + lease, UTC) for due in dues]
    async with engine.begin() as conn:
        rows = await insert_prepared(conn, table, messages, held)
    return [Dispatch(due=due, row_id=rows[m.message_id], message=m) for due, m in zip(dues, messages, strict=True)]


async def arrivals(queue: AbstractQueue, want: int, timeout: float = 10) -> dict[str, float]:
    """Message id -> monotonic arrival time."""
    got: dict[str, float] = {}

    async def on_message(message: AbstractIncomingMessage) -> None:
        got[str(message.message_id)] = time.monotonic()

    async def enough() -> bool:
        return len(got) >= want

    tag = await queue.consume(on_message, no_ack=True)
    try:
        await wait_until(enough, timeout=timeout, what=f"{want} messages")
    finally:
        await queue.cancel(tag)
    return got


async def pending_rows(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def rows_left(engine: AsyncEngine, table: Table, want: int) -> None:
    async def settled() -> bool:
        return await pending_rows(engine, table) == want

    await wait_until(settled, timeout=5, what=f"{want} outbox rows left")


def dispatcher(engine: AsyncEngine, table: Table, amqp_url: str, *, lease: float = 5.0) -> FireDispatcher:
    return FireDispatcher(engine, table, amqp_url=amqp_url, service="dispatchtest", lease_seconds=lease)


@contextlib.asynccontextmanager
async def running(fires: FireDispatcher) -> AsyncIterator[FireDispatcher]:
    """A started dispatcher, stopped (within 5 s) whatever the test did."""
    await fires.start()
    try:
        yield fires
    finally:
        await fires.stop(5)


async def test_fires_go_out_at_their_time_never_before_and_their_rows_are_cleared(
    fresh_outbox: tuple[AsyncEngine, Table], queue: AbstractQueue, amqp_url: str
) -> None:
    engine, table = fresh_outbox
    async with running(dispatcher(engine, table, amqp_url)) as fires:
        now = asyncio.get_running_loop().time()
        items = await committed(engine, table, [now + 0.4, now + 0.2, now + 0.6, now + 0.2])
        fires.add(items)
        got = await arrivals(queue, len(items))
        for item in items:
            assert got[item.message.message_id] >= item.due  # the loop clock is time.monotonic()
        await rows_left(engine, table, 0)
        assert fires.published == len(items)
        assert fires.left_to_relay == 0


async def test_a_fire_reached_after_half_its_lease_is_left_to_the_relays(
    fresh_outbox: tuple[AsyncEngine, Table], queue: AbstractQueue, amqp_url: str
) -> None:
    engine, table = fresh_outbox
    async with running(dispatcher(engine, table, amqp_url, lease=2.0)) as fires:
        now = asyncio.get_running_loop().time()
        stale = await committed(engine, table, [now - 1.5], lease=2.0)  # 1.5 s late: past half the lease
        fresh = await committed(engine, table, [now], lease=2.0)
        fires.add(stale + fresh)
        got = await arrivals(queue, 1)
        assert set(got) == {fresh[0].message.message_id}
        await rows_left(engine, table, 1)
        assert fires.left_to_relay == 1
    async with engine.connect() as conn:  # the relays' copy: still there, published once its lease passes
        left = (await conn.execute(select(table.c.event_id))).scalars().all()
    assert left == [stale[0].message.message_id]


async def test_stop_publishes_what_is_queued_each_at_its_time(
    fresh_outbox: tuple[AsyncEngine, Table], queue: AbstractQueue, amqp_url: str
) -> None:
    engine, table = fresh_outbox
    fires = dispatcher(engine, table, amqp_url)
    await fires.start()
    now = asyncio.get_running_loop().time()
    items = await committed(engine, table, [now + 0.3, now + 0.5])
    fires.add(items)
    await fires.stop(5)
    got = await arrivals(queue, 2)
    for item in items:
        assert got[item.message.message_id] >= item.due
    assert await pending_rows(engine, table) == 0
    assert fires.pending == 0


async def test_fires_added_before_the_broker_answers_wait_for_it(fresh_outbox: tuple[AsyncEngine, Table]) -> None:
    engine, table = fresh_outbox
    fires = dispatcher(engine, table, "amqp://guest:guest@127.0.0.1:1/")  # nothing listens there
    await fires.start()
    now = asyncio.get_running_loop().time()
    fires.add(await committed(engine, table, [now]))
    await asyncio.sleep(0.3)
    await fires.stop(0.5)
    assert fires.published == 0
    assert fires.left_to_relay == 1  # its row stays for the relays
    assert await pending_rows(engine, table) == 1


def test_a_poke_reaches_every_worker() -> None:
    async def scenario() -> tuple[bool, bool]:
        lead = WakeSignal()
        other = lead.follower()
        lead.arm()
        other.arm()
        sleeping = asyncio.create_task(other.sleep(None, 5))
        await asyncio.sleep(0)
        lead.poke()
        return await sleeping, lead._event.is_set()

    assert asyncio.run(scenario()) == (True, True)
