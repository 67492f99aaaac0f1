"""The relay publishes a drain as one batch: a row that fails is put off alone, the trace context each row
captured goes on with its message, and the relay's own connection comes back after it is lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_contracts import CloudEvent, build_event
from automation_core.settings import ServiceSettings
from automation_core.tracing import get_tracer, inject_headers, setup_tracing
from automation_messaging import Broker, OutboxRelay, enqueue
from automation_messaging.topology import COMMANDS, EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration
SERVICE = "outboxbatch"
tracer = get_tracer("tests.outbox")


def event() -> CloudEvent:
    data = {"job_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()), "version": 1}
    return build_event(
        "job.deleted", source="/tests/outbox", data={**data, "deleted_at": datetime.now(UTC).isoformat()}
    )


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    setup_tracing(SERVICE, None, SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
def settings(amqp_url: str, database_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name=SERVICE, env="development", amqp_url=amqp_url, database_url=database_url, outbox_poll_seconds=0.5
    )


@dataclass
class Parts:
    engine: AsyncEngine
    table: Table
    broker: Broker
    channel: AbstractChannel
    queue: AbstractQueue

    async def received(self, want: int) -> list[AbstractIncomingMessage]:
        got: list[AbstractIncomingMessage] = []

        async def probe() -> bool:
            while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
                got.append(message)
            return len(got) >= want

        await wait_until(probe, timeout=10, what=f"{want} messages")
        return got


@pytest.fixture
async def parts(settings: ServiceSettings, fresh_outbox: tuple[AsyncEngine, Table]) -> AsyncIterator[Parts]:
    engine, table = fresh_outbox
    broker = Broker(settings)
    await broker.connect()
    channel = await broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS, routing_key="job.deleted")
    yield Parts(engine, table, broker, channel, queue)
    await channel.close()
    await broker.close()


async def test_a_row_that_cannot_be_published_is_put_off_and_the_rest_of_the_batch_goes(
    parts: Parts, settings: ServiceSettings
) -> None:
    first, unroutable, last = event(), event(), event()
    async with parts.engine.begin() as conn:
        await enqueue(conn, parts.table, first, exchange=EVENTS)
        # a command no queue takes: published mandatory, so the broker returns it
        await enqueue(conn, parts.table, unroutable, exchange=COMMANDS, routing_key="tests.nobody-listens")
        await enqueue(conn, parts.table, last, exchange=EVENTS)
    relay = OutboxRelay(parts.engine, parts.table, parts.broker.publisher, settings)
    try:
        assert await relay.drain_once() == 2
        assert await relay.drain_once() == 0  # the failed row waits for its backoff
    finally:
        await relay.stop()
    assert sorted(str(m.message_id) for m in await parts.received(2)) == sorted([first.id, last.id])
    query = "SELECT event_id, attempts, last_error, available_at > now() AS later FROM {}.outbox"
    async with parts.engine.connect() as conn:
        left = (await conn.execute(text(query.format(f'"{parts.table.schema}"')))).all()
    assert [(row.event_id, row.attempts, row.later) for row in left] == [(unroutable.id, 1, True)]
    assert "nobody-listens" in left[0].last_error


async def test_one_captured_context_makes_the_batch_span_the_parent_of_its_messages(
    parts: Parts, settings: ServiceSettings, spans: InMemorySpanExporter
) -> None:
    events = [event(), event()]
    with tracer.start_as_current_span("request") as request:
        async with parts.engine.begin() as conn:
            await enqueue(conn, parts.table, [(e, EVENTS, None) for e in events])
    relay = OutboxRelay(parts.engine, parts.table, parts.broker.publisher, settings)
    try:
        assert await relay.drain_once() == 2
    finally:
        await relay.stop()
    [batch] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    request_context, batch_context = request.get_span_context(), batch.context
    assert batch.parent is not None
    assert batch_context is not None
    assert batch.parent.span_id == request_context.span_id
    assert batch_context.trace_id == request_context.trace_id
    flags = int(batch_context.trace_flags)
    expected = f"00-{batch_context.trace_id:032x}-{batch_context.span_id:016x}-{flags:02x}"
    assert [m.headers["traceparent"] for m in await parts.received(2)] == [expected, expected]


async def test_rows_of_different_contexts_keep_each_its_own(
    parts: Parts, settings: ServiceSettings, exporter: InMemorySpanExporter
) -> None:
    captured: dict[str, str] = {}
    async with parts.engine.begin() as conn:
        for _ in range(3):
            with tracer.start_as_current_span("handled message") as span:
                e = event()
                await enqueue(conn, parts.table, e, exchange=EVENTS)
                captured[e.id] = str(inject_headers({})["traceparent"])
                assert f"-{span.get_span_context().span_id:016x}-" in captured[e.id]
    relay = OutboxRelay(parts.engine, parts.table, parts.broker.publisher, settings)
    try:
        assert await relay.drain_once() == 3
    finally:
        await relay.stop()
    assert {str(m.message_id): m.headers["traceparent"] for m in await parts.received(3)} == captured


async def outbox_is_empty(parts: Parts) -> bool:
    async with parts.engine.connect() as conn:
        left = (await conn.execute(text(f'SELECT count(*) FROM "{parts.table.schema}".outbox'))).scalar_one()
    return int(left) == 0


async def test_the_relay_reconnects_after_losing_its_connection(
    parts: Parts, settings: ServiceSettings, database_url: str
) -> None:
    relay = OutboxRelay(parts.engine, parts.table, parts.broker.publisher, settings)
    await relay.start()
    try:
        before, after = event(), event()
        async with parts.engine.begin() as conn:
            await enqueue(conn, parts.table, before, exchange=EVENTS)
        assert [str(m.message_id) for m in await parts.received(1)] == [before.id]
        # The message reaches the queue before the relay's transaction deletes its row: a connection lost in
        # between rolls the delete back and the row goes again (at least once). Wait for the commit, so that
        # what the test loses is an idle connection and `before` cannot come twice.
        await wait_until(lambda: outbox_is_empty(parts), timeout=10, what="the relay to delete the row it sent")
        admin = await asyncpg.connect(database_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                f"{SERVICE}-outbox",
            )
        finally:
            await admin.close()
        assert killed == 1
        async with parts.engine.begin() as conn:
            await enqueue(conn, parts.table, after, exchange=EVENTS)
        assert [str(m.message_id) for m in await parts.received(1)] == [after.id]
    finally:
        await relay.stop()
