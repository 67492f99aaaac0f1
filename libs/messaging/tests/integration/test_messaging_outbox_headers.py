"""The relay publishes a row's own headers and priority (for dead letters and prioritised commands)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_contracts import build_event
from automation_core.settings import ServiceSettings
from automation_messaging import Broker, OutboxRelay, enqueue
from automation_messaging.outbox import PRIORITY_KEY
from automation_messaging.topology import EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(amqp_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="outboxheaders",
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
        outbox_poll_seconds=0.5,
    )


async def test_headers_and_priority_reach_the_broker(
    settings: ServiceSettings, broker: Broker, fresh_outbox: tuple[AsyncEngine, Table]
) -> None:
    engine, table = fresh_outbox
    channel = await broker.channel()
    try:
        queue = await channel.declare_queue(exclusive=True, arguments={"x-max-priority": 9})
        await queue.bind(EVENTS, routing_key="job.deleted")
        data = {"job_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()), "version": 1}
        plain, marked = (
            build_event("job.deleted", source="/tests", data={**data, "deleted_at": datetime.now(UTC).isoformat()})
            for _ in range(2)
        )
        async with engine.begin() as conn:
            await enqueue(conn, table, plain, exchange=EVENTS)
            await enqueue(conn, table, marked, exchange=EVENTS, headers={"x-reason": "why", "x-n": 3}, priority=6)
        relay = OutboxRelay(engine, table, broker.publisher, settings)
        await relay.start()
        got: dict[str, AbstractIncomingMessage] = {}

        async def both() -> bool:
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got[str(message.message_id)] = message
            return len(got) == 2

        try:
            await wait_until(both, timeout=10, what="both messages")
        finally:
            await relay.stop()
        assert got[marked.id].priority == 6
        assert got[marked.id].headers["x-reason"] == "why"
        assert got[marked.id].headers["x-n"] == 3
        assert PRIORITY_KEY not in got[marked.id].headers
        assert not got[plain.id].priority
        assert "x-reason" not in got[plain.id].headers
    finally:
        await channel.close()
