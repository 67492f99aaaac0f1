"""Transactional outbox: rolled back writes publish nothing; committed ones are published, even after a crash."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aio_pika.abc import AbstractQueue
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_contracts import CloudEvent, build_event
from automation_core.settings import ServiceSettings
from automation_messaging import Broker, OutboxRelay, enqueue
from automation_messaging.topology import EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration


def event() -> CloudEvent:
    return build_event(
        "job.deleted",
        source="/tests/outbox",
        data={
            "job_id": str(uuid.uuid4()),
            "account_id": str(uuid.uuid4()),
            "version": 1,
            "deleted_at": datetime.now(UTC).isoformat(),
        },
    )


@pytest.fixture
def settings(amqp_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="outboxtest",
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
        outbox_poll_seconds=0.5,
    )


@pytest.fixture
async def parts(
    settings: ServiceSettings, fresh_outbox: tuple[AsyncEngine, Table]
) -> AsyncIterator[tuple[AsyncEngine, Table, Broker, AbstractQueue]]:
    engine, table = fresh_outbox
    broker = Broker(settings)
    await broker.connect()
    channel = await broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS, routing_key="job.deleted")
    yield engine, table, broker, queue
    await channel.close()
    await broker.close()


async def received_ids(queue: AbstractQueue, want: int) -> list[str]:
    ids: list[str] = []

    async def probe() -> bool:
        while (msg := await queue.get(no_ack=True, fail=False)) is not None:
            ids.append(str(msg.message_id))
        return len(ids) >= want

    await wait_until(probe, timeout=10, what=f"{want} messages")
    return ids


async def test_rolled_back_transaction_publishes_nothing_committed_one_is_published(
    parts: tuple[AsyncEngine, Table, Broker, AbstractQueue], settings: ServiceSettings
) -> None:
    engine, table, broker, queue = parts
    relay = OutboxRelay(engine, table, broker.publisher, settings)
    await relay.start()
    try:
        lost, kept = event(), event()
        async with engine.connect() as conn:
            tx = await conn.begin()
            await enqueue(conn, table, lost, exchange=EVENTS)
            await tx.rollback()
        async with engine.begin() as conn:
            await enqueue(conn, table, kept, exchange=EVENTS)
        assert await received_ids(queue, 1) == [kept.id]
        await wait_until(lambda: _zero(relay), what="outbox emptied")
    finally:
        await relay.stop()


async def _zero(relay: OutboxRelay) -> bool:
    return await relay.pending() == 0


async def test_rows_written_while_no_relay_runs_are_published_when_it_starts(
    parts: tuple[AsyncEngine, Table, Broker, AbstractQueue], settings: ServiceSettings
) -> None:
    """A crash after commit and before publish loses nothing: the next relay publishes the rows."""
    engine, table, broker, queue = parts
    events = [event() for _ in range(25)]
    async with engine.begin() as conn:
        await enqueue(conn, table, [(e, EVENTS, None) for e in events])
    relay = OutboxRelay(engine, table, broker.publisher, settings)
    await relay.start()
    try:
        ids = await received_ids(queue, len(events))
    finally:
        await relay.stop()
    assert ids == [e.id for e in events]
    assert await relay.pending() == 0
