"""Transactional outbox: a state change and its messages commit together; a relay publishes them.

A service adds :func:`outbox_table` to its metadata (and its migration), calls :func:`enqueue` inside
the same transaction as its state change, and runs one :class:`OutboxRelay`. The relay claims rows with
``FOR UPDATE SKIP LOCKED`` (replicas share the work), publishes each with a broker confirm and deletes
it in the same transaction. A crash after the publish and before the commit publishes the row again
later: delivery is at-least-once, and consumers deduplicate by event id or natural key. ``enqueue``
also issues ``pg_notify`` so the relay wakes at commit instead of waiting for its poll interval.

A row may carry AMQP headers of its own (``enqueue(..., headers=...)``, e.g. the ``x-dead-letter-reason``
of a message sent to ``automation.dlx``) and a message priority (``enqueue(..., priority=...)``). The
priority travels in the row's headers under :data:`PRIORITY_KEY`, which the relay turns back into the
AMQP ``priority`` property instead of publishing it as a header.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, Table, Text, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from automation_contracts import CloudEvent
from automation_core.logging import get_logger
from automation_core.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PENDING
from automation_core.settings import ServiceSettings
from automation_core.tracing import inject_headers
from automation_messaging.broker import Publisher

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 60
PRIORITY_KEY = "x-outbox-priority"
"""Key of a row's headers holding the AMQP priority to publish with (never published as a header)."""


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in the service's schema."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False),
        Column("exchange", Text, nullable=False),
        Column("routing_key", Text, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text),
    )


def notify_channel(schema: str) -> str:
    return f"automation_outbox_{schema}"


def outbox_row(
    event: CloudEvent,
    *,
    exchange: str,
    routing_key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    priority: int | None = None,
) -> dict[str, Any]:
    """The values of one outbox row (trace context captured now, so the trace continues at publish).

    ``headers`` are published as AMQP headers (JSON values: text, numbers, booleans, lists, objects);
    ``priority`` (0-255) as the AMQP priority property.
    """
    row_headers: dict[str, Any] = dict(inject_headers({}))
    if headers:
        row_headers.update(headers)
    if priority is not None:
        if not 0 <= priority <= 255:
            raise ValueError("priority must be between 0 and 255")
        row_headers[PRIORITY_KEY] = priority
    return {
        "event_id": event.id,
        "exchange": exchange,
        "routing_key": routing_key or event.type,
        "body": event.to_json_bytes(),
        "headers": row_headers,
    }


def split_priority(headers: Mapping[str, Any] | None) -> tuple[dict[str, Any], int | None]:
    """A row's headers without :data:`PRIORITY_KEY`, and the priority it held (None when absent)."""
    published = dict(headers or {})
    raw = published.pop(PRIORITY_KEY, None)
    return published, raw if isinstance(raw, int) and not isinstance(raw, bool) else None


async def enqueue(
    db: AsyncSession | AsyncConnection,
    table: Table,
    events: list[tuple[CloudEvent, str, str | None]] | CloudEvent,
    *,
    exchange: str | None = None,
    routing_key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    priority: int | None = None,
) -> None:
    """Add messages to the outbox in the caller's transaction.

    ``events`` is one event (with ``exchange``/``routing_key``) or a list of (event, exchange, routing key).
    ``headers`` and ``priority`` (optional) apply to every message of the call.
    """
    if isinstance(events, CloudEvent):
        if exchange is None:
            raise ValueError("exchange is required")
        items = [(events, exchange, routing_key)]
    else:
        items = events
    if not items:
        return
    rows = [outbox_row(ev, exchange=ex, routing_key=rk, headers=headers, priority=priority) for ev, ex, rk in items]
    await db.execute(table.insert(), rows)
    await db.execute(text("SELECT pg_notify(:channel, '')"), {"channel": notify_channel(str(table.schema))})


class OutboxRelay:
    """Publishes outbox rows with confirms; one task per service process."""

    def __init__(self, engine: AsyncEngine, table: Table, publisher: Publisher, settings: ServiceSettings) -> None:
        self._engine = engine
        self._table = table
        self._publisher = publisher
        self._settings = settings
        self._schema = str(table.schema)
        self._service = settings.service_name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False

    def wake(self) -> None:
        """Drain now (in-process shortcut for the notify)."""
        self._wake.set()

    async def start(self) -> None:
        try:
            dsn = self._settings.database_url.get_secret_value()
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(notify_channel(self._schema), lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox_listen_failed", error=str(exc))
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=self._settings.shutdown_grace_seconds or None)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.drain_once()
                await self._update_gauges()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive database or broker outages
                log.warning("outbox_drain_failed", error=repr(exc))
                published = 0
                await asyncio.sleep(self._settings.outbox_poll_seconds)
            if published >= self._settings.outbox_batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.outbox_poll_seconds)

    async def drain_once(self) -> int:
        """Publish one batch of due rows; returns how many were published."""
        t = self._table
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    t.select()
                    .with_only_columns(
                        t.c.id,
                        t.c.event_id,
                        t.c.exchange,
                        t.c.routing_key,
                        t.c.body,
                        t.c.headers,
                        t.c.attempts,
                    )
                    .where(t.c.available_at <= func.now())
                    .order_by(t.c.id)
                    .limit(self._settings.outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(r) for r in rows), return_exceptions=True)
            sent = [r.id for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            if sent:
                await conn.execute(t.delete().where(t.c.id.in_(sent)))
            for r, res in zip(rows, results, strict=True):
                if isinstance(res, BaseException):
                    backoff = min(2 ** min(r.attempts, 6), MAX_BACKOFF_SECONDS)
                    await conn.execute(
                        t.update()
                        .where(t.c.id == r.id)
                        .values(
                            attempts=t.c.attempts + 1,
                            last_error=repr(res)[:2000],
                            available_at=func.now() + timedelta(seconds=backoff),
                        )
                    )
                    log.warning("outbox_publish_failed", event_id=r.event_id, error=repr(res))
        return len(sent)

    async def _publish(self, row: Any) -> None:
        headers, priority = split_priority(row.headers)
        await self._publisher.publish_raw(
            row.body,
            exchange=row.exchange,
            routing_key=row.routing_key,
            headers=headers,
            message_id=row.event_id,
            message_type=row.routing_key,
            priority=priority,
        )

    async def _update_gauges(self) -> None:
        t = self._table
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    t.select().with_only_columns(
                        func.count(),
                        func.coalesce(func.extract("epoch", func.now() - func.min(t.c.created_at)), 0),
                    )
                )
            ).one()
        OUTBOX_PENDING.labels(self._service).set(row[0])
        OUTBOX_OLDEST_AGE.labels(self._service).set(float(row[1]))

    async def pending(self) -> int:
        """Rows not yet published."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(self._table))).scalar_one())
