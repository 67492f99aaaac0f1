"""Transactional outbox: a state change and its messages commit together; a relay publishes them.

A service adds :func:`outbox_table` to its metadata (and its migration), calls :func:`enqueue` inside
the same transaction as its state change, and runs one :class:`OutboxRelay`. The relay claims rows with
``FOR UPDATE SKIP LOCKED`` (replicas share the work), publishes them as one batch with broker confirms
and deletes the confirmed ones in the same transaction. A crash after the publish and before the commit
publishes the rows again later: delivery is at-least-once, and consumers deduplicate by event id or
natural key. ``enqueue`` also issues ``pg_notify`` so the relay wakes at commit instead of waiting for
its poll interval.

A row may carry AMQP headers of its own (``enqueue(..., headers=...)``, e.g. the ``x-dead-letter-reason``
of a message sent to ``automation.dlx``) and a message priority (``enqueue(..., priority=...)``). The
priority travels in the row's headers under :data:`PRIORITY_KEY`, which the relay turns back into the
AMQP ``priority`` property instead of publishing it as a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
from opentelemetry import context as otel_context
from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, Table, Text, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from automation_contracts import CloudEvent
from automation_core.logging import get_logger
from automation_core.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PENDING
from automation_core.settings import ServiceSettings
from automation_core.tracing import extract_context, inject_headers
from automation_messaging.broker import Publisher, RawMessage

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 60
GAUGE_INTERVAL_SECONDS = 1.0
"""How often the relay refreshes its pending/oldest-age gauges (at most)."""
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


async def insert_prepared(
    conn: AsyncConnection, table: Table, messages: Sequence[RawMessage], available_at: Sequence[datetime]
) -> dict[str, int]:
    """Add messages whose bodies are already built, each held back from relays until its
    ``available_at``; returns the row id of each message by its ``message_id`` (distinct within a call).

    For a caller that publishes the messages itself at their time (:meth:`Publisher.publish_many`)
    and deletes the rows after the confirms: the rows are the crash-safe copy, published by any
    replica's relay only if the caller has not deleted them by ``available_at``. One statement,
    whatever the batch size, and no NOTIFY (no relay has anything to do before ``available_at``).
    """
    if len(messages) != len(available_at):
        raise ValueError("one available_at per message")
    if not messages:
        return {}
    ids = [m.message_id for m in messages]
    if len(set(ids)) != len(ids):
        raise ValueError("message ids must be distinct within one insert_prepared call")
    captured = dict(inject_headers({}))
    plain: dict[int | None, str] = {}  # the common case, no headers of its own: one document per priority

    def headers_of(m: RawMessage) -> str:
        if not m.headers and m.priority in plain:
            return plain[m.priority]
        document = json.dumps(
            {**captured, **m.headers, **({PRIORITY_KEY: m.priority} if m.priority is not None else {})}
        )
        if not m.headers:
            plain[m.priority] = document
        return document

    headers = [headers_of(m) for m in messages]
    statement = text(
        f"""
        INSERT INTO "{table.schema}"."{table.name}" (event_id, exchange, routing_key, body, headers, available_at)
        SELECT m.event_id, m.exchange, m.routing_key, m.body, CAST(m.headers AS jsonb), m.available_at
        FROM unnest(
            CAST(:event_ids AS text[]), CAST(:exchanges AS text[]), CAST(:routing_keys AS text[]),
            CAST(:bodies AS bytea[]), CAST(:headers AS text[]), CAST(:available_at AS timestamptz[])
        ) AS m(event_id, exchange, routing_key, body, headers, available_at)
        RETURNING id, event_id
        """  # noqa: S608 - schema and table names come from the service's metadata, not from input
    )
    result = await conn.execute(
        statement,
        {
            "event_ids": ids,
            "exchanges": [m.exchange for m in messages],
            "routing_keys": [m.routing_key for m in messages],
            "bodies": [m.body for m in messages],
            "headers": headers,
            "available_at": list(available_at),
        },
    )
    return {str(row.event_id): int(row.id) for row in result}


async def delete_rows(conn: AsyncConnection, table: Table, ids: Sequence[int]) -> int:
    """Delete outbox rows by id (messages their owner published itself); returns how many were left."""
    if not ids:
        return 0
    result = await conn.execute(
        text(f'DELETE FROM "{table.schema}"."{table.name}" WHERE id = ANY(CAST(:ids AS bigint[]))'),  # noqa: S608
        {"ids": list(ids)},
    )
    return int(getattr(result, "rowcount", 0) or 0)


TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
"""A row's captured trace context: the headers :func:`inject_headers` writes."""


def asyncpg_dsn(url: str) -> str:
    """The libpq form of a database URL (SQLAlchemy's ``postgresql+asyncpg://`` is accepted too)."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _published_headers(document: str) -> tuple[dict[str, Any], int | None]:
    """A row's stored headers (JSON text) as AMQP headers, and the priority they held."""
    if document == "{}":  # most rows: nothing to decode
        return {}, None
    return split_priority(json.loads(document))


class OutboxRelay:
    """Publishes outbox rows with confirms; one task per service process.

    The relay keeps one connection of its own (not a pool checkout, so no pre-ping per drain) that
    both LISTENs for the enqueue notifications and runs the drains; it is reopened after a failure.
    A drain claims up to ``AUTOMATION_OUTBOX_BATCH_SIZE`` due rows, publishes them as one batch
    (:meth:`Publisher.send_many`: one socket write, confirms pipelined), deletes the confirmed rows
    and puts the others off with backoff, all in one transaction.

    Trace context: a message keeps the context its row captured at enqueue, so the consumers' spans
    are children of the span that wrote the row. When every row of a drain captured the same context
    (the common case at low rates: the rows of one request or one handled message), the batch's
    PRODUCER span is made a child of that context and the messages carry the batch span instead, so
    the trace reads request → publish → consume as for a direct publish.
    """

    def __init__(self, engine: AsyncEngine, table: Table, publisher: Publisher, settings: ServiceSettings) -> None:
        self._engine = engine
        self._table = table
        self._publisher = publisher
        self._settings = settings
        self._schema = str(table.schema)
        self._service = settings.service_name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._stopping = False
        qualified = f'"{table.schema}"."{table.name}"'
        # Plain SQL on the relay's own asyncpg connection: prepared once, no ORM compile per drain.
        self._claim_sql = f"""
            SELECT id, event_id, exchange, routing_key, body, headers::text AS headers, attempts
            FROM {qualified} WHERE available_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
        """  # noqa: S608 - schema and table names come from the service's metadata, not from input
        self._delete_sql = f"DELETE FROM {qualified} WHERE id = ANY($1::bigint[])"  # noqa: S608
        self._retry_sql = f"""
            UPDATE {qualified} AS o
            SET attempts = o.attempts + 1, last_error = f.error, available_at = now() + make_interval(secs => f.backoff)
            FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS f(id, error, backoff)
            WHERE o.id = f.id
        """  # noqa: S608
        self._gauges_sql = f"""
            SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM {qualified}
        """  # noqa: S608

    def wake(self) -> None:
        """Drain now (in-process shortcut for the notify)."""
        self._wake.set()

    async def start(self) -> None:
        try:
            await self._connection()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox_listen_failed", error=str(exc))
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=self._settings.shutdown_grace_seconds or None)
        await self._close()

    async def _connection(self) -> asyncpg.Connection:
        """The relay's connection, (re)opened and listening when it is not."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        await self._close()
        conn = await asyncpg.connect(
            asyncpg_dsn(self._settings.database_url.get_secret_value()),
            server_settings={"application_name": f"{self._service}-outbox"},
        )
        try:
            await conn.add_listener(notify_channel(self._schema), self._on_notify)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._wake.set()  # notifications sent while no connection listened are lost: look now
        return conn

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _run(self) -> None:
        gauges_due = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.drain_once()
                if loop.time() >= gauges_due:  # a count(*) per drain would cost more than the drain
                    await self._update_gauges()
                    gauges_due = loop.time() + GAUGE_INTERVAL_SECONDS
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
        conn = await self._connection()
        async with conn.transaction():
            rows = await conn.fetch(self._claim_sql, self._settings.outbox_batch_size)
            if not rows:
                return 0
            results = await self._publish(rows)
            sent = [r["id"] for r, res in zip(rows, results, strict=True) if res is None]
            failed = [(r, res) for r, res in zip(rows, results, strict=True) if res is not None]
            if sent:
                await conn.execute(self._delete_sql, sent)
            if failed:
                await conn.execute(
                    self._retry_sql,
                    [r["id"] for r, _ in failed],
                    [repr(res)[:2000] for _, res in failed],
                    [float(min(2 ** min(r["attempts"], 6), MAX_BACKOFF_SECONDS)) for r, _ in failed],
                )
                for r, res in failed:
                    log.warning("outbox_publish_failed", event_id=r["event_id"], error=repr(res))
        return len(sent)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> list[BaseException | None]:
        """Publish the rows as one batch; one result per row (None: confirmed)."""
        messages: list[RawMessage] = []
        contexts: set[tuple[Any, ...]] = set()
        for r in rows:
            headers, priority = _published_headers(r["headers"])
            contexts.add(tuple(headers.get(key) for key in TRACE_HEADERS))
            messages.append(
                RawMessage(
                    body=r["body"],
                    exchange=r["exchange"],
                    routing_key=r["routing_key"],
                    message_id=r["event_id"],
                    message_type=r["routing_key"],
                    headers=headers,
                    priority=priority,
                )
            )
        token = None
        if len(contexts) == 1 and messages[0].headers.get("traceparent"):
            # One captured context for the whole batch: publish in it, the messages carrying the batch span.
            token = otel_context.attach(extract_context(messages[0].headers))
            messages = [
                replace(m, headers={k: v for k, v in m.headers.items() if k not in TRACE_HEADERS}) for m in messages
            ]
        try:
            confirms = await self._publisher.send_many(messages)
        except Exception as exc:  # noqa: BLE001 - nothing written, or not all: every row is tried again
            return [exc] * len(messages)
        finally:
            if token is not None:
                otel_context.detach(token)
        try:
            return await confirms
        except Exception as exc:  # noqa: BLE001 - e.g. the confirms timed out: every row is tried again
            return [exc] * len(messages)

    async def _update_gauges(self) -> None:
        row = await (await self._connection()).fetchrow(self._gauges_sql)
        if row is None:  # never: an aggregate returns its one row
            return
        OUTBOX_PENDING.labels(self._service).set(row[0])
        OUTBOX_OLDEST_AGE.labels(self._service).set(float(row[1]))

    async def pending(self) -> int:
        """Rows not yet published."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(self._table))).scalar_one())
