"""Followed logs: ``GET /api/v1/executions/{id}/logs?follow=true`` as server-sent events.

Whoever records an execution event (the consumer, a cancellation) issues
``pg_notify('job_api_executions', <execution ids>)`` in the same transaction, so the notification is
sent at commit, by whichever job-api replica recorded it, to every replica. The payload is one
execution id, or several separated by commas (a batch of events recorded together notifies once).
:class:`ExecutionWatch` holds one ``LISTEN`` connection per process while at least one stream follows
(reconnecting when it drops) and wakes the streams following those executions. A stream re-reads the
database when woken, and at least every ``AUTOMATION_LOG_FOLLOW_POLL_SECONDS`` anyway, so a lost
notification delays it, never stalls it. While the database cannot be reached (a restart), the stream
sends a comment and reads again after a pause, so it survives the outage instead of ending.

A process that nobody follows does not listen: PostgreSQL makes every backend that LISTENs in the
database, on any channel, run a transaction for each notification anyone sends, and job-api sends one
per recorded batch. The connection is opened by the first stream and closed once no stream has
followed for ``idle_close_seconds`` (30 s).
The framing is :mod:`automation_job_api.domain.sse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg
from pydantic import TypeAdapter
from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.errors import Outage
from automation_core.logging import get_logger
from automation_job_api.db.tables import Execution, ExecutionLogBatch
from automation_job_api.domain.executions import TERMINAL_STATUSES
from automation_job_api.domain.notifications import NOTIFY_CHANNEL, parse_payload
from automation_job_api.domain.sse import START, LogPosition, comment, frame
from automation_job_api.metrics import LOG_FOLLOW_STREAMS

PAGE = 500
OUTAGE_FIRST_PAUSE_SECONDS = 0.5
OUTAGE_MAX_PAUSE_SECONDS = 5.0
IDLE_CLOSE_SECONDS = 30.0
"""How long the watch keeps listening after the last stream ended (a new stream soon after reuses it)."""
log = get_logger(__name__)


async def notify_execution(session: AsyncSession, execution_id: uuid.UUID) -> None:
    """Tell every follower of the execution, at commit, that something about it was recorded.

    (A batch of recorded events notifies for all its executions at once: see
    :mod:`automation_job_api.db.recording`.)
    """
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": str(execution_id)}
    )


class ExecutionWatch:
    """One ``LISTEN job_api_executions`` connection per process, while streams wait on it."""

    def __init__(
        self,
        dsn: str,
        *,
        application_name: str = "job-api-watch",
        max_reconnect_seconds: float = 30.0,
        idle_close_seconds: float = IDLE_CLOSE_SECONDS,
    ) -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._max_delay = max_reconnect_seconds
        self._idle_close = idle_close_seconds
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._turned = asyncio.Event()
        """Set when ``_waiters`` turned empty or non-empty, or the connection was lost (whoever waits on
        it clears it first)."""
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-api-execution-watch")

    async def stop(self) -> None:
        """Stop listening and release every stream (they end; clients resume with Last-Event-ID)."""
        self.closing = True
        self._wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, execution_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever something about the execution is recorded (or the watch stops)."""
        event = asyncio.Event()
        if not self._waiters:
            self._turned.set()
        self._waiters.setdefault(execution_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiters.get(execution_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[execution_id]
                    if not self._waiters:
                        self._turned.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if not self._waiters:
            return
        for execution_id in parse_payload(payload):
            for event in self._waiters.get(execution_id, ()):
                event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            while not self._waiters:
                self._turned.clear()
                await self._turned.wait()
            try:
                conn = await asyncpg.connect(self._dsn, server_settings={"application_name": self._application_name})
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("execution_watch_connect_failed", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            lost = asyncio.Event()

            def on_lost(_conn: object, lost: asyncio.Event = lost) -> None:
                lost.set()
                self._turned.set()

            conn.add_termination_listener(on_lost)
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                delay = 0.5
                self.listening.set()
                self._wake_all()  # notifications may have been missed while not listening
                if await self._until_lost_or_idle(lost):
                    log.warning("execution_watch_connection_lost")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("execution_watch_failed", error=str(exc))
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _until_lost_or_idle(self, lost: asyncio.Event) -> bool:
        """Wait until the connection is lost (True) or no stream has followed for the idle time (False)."""
        while not lost.is_set():
            self._turned.clear()  # losing the connection sets it too
            try:
                await asyncio.wait_for(self._turned.wait(), None if self._waiters else self._idle_close)
            except TimeoutError:
                return False  # nobody followed, and nothing turned, for the whole idle time
        return True


@dataclass(frozen=True, slots=True)
class FollowSettings:
    """Timings of a followed log (see JobApiSettings)."""

    heartbeat_seconds: float = 15.0
    poll_seconds: float = 2.0
    end_grace_seconds: float = 0.5


_TIME: TypeAdapter[datetime | None] = TypeAdapter(datetime | None)


def _iso(value: datetime | None) -> str | None:
    """A time as ``GET /executions/{id}`` writes it (RFC 3339, UTC as ``Z``)."""
    return cast("str | None", _TIME.dump_python(value, mode="json"))


def _status_of(row: Execution) -> dict[str, Any]:
    return {
        "status": row.status,
        "attempt": row.attempt,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "exit_code": row.exit_code,
        "error": row.error,
        "cancel_requested_at": _iso(row.cancel_requested_at),
    }


def _batch_of(batch: ExecutionLogBatch) -> dict[str, Any]:
    return {"attempt": batch.attempt, "seq": batch.seq, "truncated": batch.truncated, "entries": batch.entries}


class LogFollower:
    """Builds the event stream of one followed log."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], watch: ExecutionWatch, settings: FollowSettings
    ) -> None:
        self._sessions = sessions
        self._watch = watch
        self._settings = settings

    async def _read(self, execution_id: uuid.UUID, after: LogPosition) -> tuple[Execution, list[ExecutionLogBatch]]:
        async with self._sessions() as session:
            row = await session.scalar(select(Execution).where(Execution.id == execution_id))
            batches = (
                await session.scalars(
                    select(ExecutionLogBatch)
                    .where(
                        ExecutionLogBatch.execution_id == execution_id,
                        tuple_(ExecutionLogBatch.attempt, ExecutionLogBatch.seq) > tuple_(after.attempt, after.seq),
                    )
                    .order_by(ExecutionLogBatch.attempt, ExecutionLogBatch.seq)
                    .limit(PAGE)
                )
            ).all()
        assert row is not None  # the route checked it exists, and executions are never deleted
        return row, list(batches)

    async def stream(self, execution_id: uuid.UUID, after: LogPosition | None) -> AsyncIterator[str]:
        """Batches after ``after``, then new ones as they are recorded; status changes; the end."""
        position = after or START
        last_status: tuple[str, int] | None = None
        finishing_since: float | None = None
        last_sent = time.monotonic()
        LOG_FOLLOW_STREAMS.inc()
        try:
            with self._watch.subscribe(execution_id) as wake:
                outage = Outage(
                    started="log_follow_database_unreachable",
                    ended="log_follow_database_back",
                    first=OUTAGE_FIRST_PAUSE_SECONDS,
                    cap=OUTAGE_MAX_PAUSE_SECONDS,
                )
                while not self._watch.closing:
                    wake.clear()
                    try:
                        row, batches = await self._read(execution_id, position)
                    except Exception as exc:  # noqa: BLE001 - Outage.pause raises it again unless an outage
                        pause = outage.pause(exc)  # raises again unless the database could not be reached
                        last_sent = time.monotonic()
                        yield comment("the database cannot be reached; the log goes on when it answers")
                        await asyncio.sleep(pause)
                        continue
                    outage.over()
                    for batch in batches:
                        position = LogPosition(batch.attempt, batch.seq)
                        last_sent = time.monotonic()
                        yield frame(_batch_of(batch), event="log", event_id=position.event_id())
                    if (row.status, row.attempt) != last_status:
                        last_status = (row.status, row.attempt)
                        last_sent = time.monotonic()
                        yield frame(_status_of(row), event="status")
                    if len(batches) == PAGE:
                        continue
                    now = time.monotonic()
                    if row.status in TERMINAL_STATUSES:
                        # Late batches of the last attempt may still be on their way: wait a little.
                        finishing_since = finishing_since if finishing_since is not None else now
                        remaining = self._settings.end_grace_seconds - (now - finishing_since)
                        if remaining <= 0:
                            yield frame({"status": row.status}, event="end")
                            return
                        await self._wait(wake, remaining)
                        continue
                    heartbeat_in = self._settings.heartbeat_seconds - (now - last_sent)
                    if heartbeat_in <= 0:
                        last_sent = now
                        yield comment()
                        heartbeat_in = self._settings.heartbeat_seconds
                    await self._wait(wake, min(self._settings.poll_seconds, heartbeat_in))
        finally:
            LOG_FOLLOW_STREAMS.dec()

    @staticmethod
    async def _wait(wake: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=timeout)
