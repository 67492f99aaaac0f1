"""Execution events in: the running-state table behind the overlap policy, and backfill progress.

Queue ``scheduler.execution-events`` is bound to ``execution.started`` and the terminal types
(``execution.succeeded|failed|timed_out|cancelled``), never to ``execution.log``. Each event is one
transaction:

- ``execution.started``: the execution counts as running until its timeout (from the job's spec, else
  a day) plus ``AUTOMATION_SCHEDULER_RUNNING_GRACE_SECONDS`` (a run whose end event is lost does not
  block its job forever).
- ``execution.failed`` / ``timed_out`` with ``will_retry``: still running; the expiry moves past the next
  attempt's start plus the timeout and grace.
- a terminal event: finished. The row stays (until the retention cleanup) so a late, redelivered
  ``execution.started`` cannot revive it.

Only jobs whose overlap policy is ``forbid`` or ``replace`` are tracked (one indexed look-up otherwise).
A terminal event of a backfill run also counts the backfill's progress and releases its next runs.
Redeliveries are harmless: every write is an idempotent upsert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from aio_pika.abc import AbstractChannel, AbstractQueue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import (
    CloudEvent,
    ContractError,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    parse_data,
)
from automation_core.logging import get_logger
from automation_messaging import DeadLetter, Delivery
from automation_messaging.topology import EVENTS, declare_service_queue
from automation_scheduler.backfill import BackfillService
from automation_scheduler.db.tables import SCHEMA
from automation_scheduler.settings import SchedulerSettings

log = get_logger(__name__)
EXECUTION_EVENTS_QUEUE = "scheduler.execution-events"
STARTED = "execution.started"
TERMINAL = ("execution.succeeded", "execution.failed", "execution.timed_out", "execution.cancelled")
DEFAULT_TIMEOUT_SECONDS = 86_400

_TRACKED = f"""
    FROM "{SCHEMA}".schedules AS s
    WHERE s.job_id = CAST(:job_id AS uuid) AND s.spec->>'overlap_policy' IN ('forbid', 'replace')
"""
_RUNNING = text(
    f"""
    INSERT INTO "{SCHEMA}".running (execution_id, job_id, attempt, started_at, expires_at)
    SELECT CAST(:execution_id AS uuid), s.job_id, CAST(:attempt AS integer), CAST(:started_at AS timestamptz),
        CAST(:base AS timestamptz) + make_interval(
            secs => COALESCE((s.spec->>'timeout_seconds')::float8, {DEFAULT_TIMEOUT_SECONDS}) + CAST(:grace AS float8))
    {_TRACKED}
    ON CONFLICT (execution_id) DO UPDATE
    SET attempt = EXCLUDED.attempt,
        started_at = COALESCE(EXCLUDED.started_at, running.started_at),
        expires_at = GREATEST(EXCLUDED.expires_at, running.expires_at),
        updated_at = now()
    WHERE running.finished_at IS NULL AND running.attempt <= EXCLUDED.attempt
    """  # noqa: S608 - constants only
)
_FINISHED = text(
    f"""
    INSERT INTO "{SCHEMA}".running (execution_id, job_id, attempt, started_at, expires_at, finished_at)
    SELECT CAST(:execution_id AS uuid), s.job_id, CAST(:attempt AS integer), CAST(:started_at AS timestamptz),
        CAST(:finished_at AS timestamptz), CAST(:finished_at AS timestamptz)
    {_TRACKED}
    ON CONFLICT (execution_id) DO UPDATE
    SET finished_at = EXCLUDED.finished_at, attempt = GREATEST(EXCLUDED.attempt, running.attempt), updated_at = now()
    WHERE running.finished_at IS NULL
    """  # noqa: S608 - constants only
)


class ExecutionEventsQueue:
    """Declares ``scheduler.execution-events`` (a queue factory for ``Runtime.consume``)."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._settings = settings

    async def __call__(self, channel: AbstractChannel) -> AbstractQueue:
        return await declare_service_queue(
            channel,
            EXECUTION_EVENTS_QUEUE,
            [(EVENTS, key) for key in (STARTED, *TERMINAL)],
            queue_type=self._settings.amqp_queue_type,
            delivery_limit=self._settings.amqp_delivery_limit,
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """What one execution event means here."""

    execution_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    started_at: datetime | None
    at: datetime
    """started_at for a start; the next attempt's time for a retry; finished_at for an end."""
    kind: str
    """``started``, ``retrying`` or ``finished``."""
    ok: bool = False


def progress_of(event: CloudEvent) -> Progress | None:
    """The meaning of an execution event (None for types not handled); raises ``ContractError``."""
    if event.type == STARTED:
        s = parse_data(event, ExecutionStarted)
        return Progress(s.execution_id, s.job_id, s.attempt, s.started_at, s.started_at, "started")
    if event.type == "execution.succeeded":
        ok = parse_data(event, ExecutionSucceeded)
        return Progress(ok.execution_id, ok.job_id, ok.attempt, ok.started_at, ok.finished_at, "finished", ok=True)
    if event.type in ("execution.failed", "execution.timed_out"):
        f = parse_data(event, ExecutionFailed)
        if f.will_retry:
            at = f.next_attempt_at or f.finished_at
            return Progress(f.execution_id, f.job_id, f.attempt, f.started_at, at, "retrying")
        return Progress(f.execution_id, f.job_id, f.attempt, f.started_at, f.finished_at, "finished")
    if event.type == "execution.cancelled":
        c = parse_data(event, ExecutionCancelled)
        return Progress(c.execution_id, c.job_id, c.attempt, None, c.finished_at, "finished")
    return None


class ExecutionEventsHandler:
    """Handles one delivery on ``scheduler.execution-events``."""

    def __init__(self, engine: AsyncEngine, backfills: BackfillService, *, grace_seconds: float) -> None:
        self._engine = engine
        self._backfills = backfills
        self._grace = grace_seconds

    async def __call__(self, event: CloudEvent, _delivery: Delivery) -> CloudEvent | None:
        try:
            progress = progress_of(event)
        except ContractError as exc:
            raise DeadLetter(f"invalid {event.type}: {exc}") from exc
        if progress is None:
            return None
        async with self._engine.begin() as conn:
            released = await self.apply(conn, progress)
        self._backfills.after_commit(released)
        return None

    async def apply(self, conn: AsyncConnection, p: Progress) -> int:
        """Record one execution event; returns the backfill runs it released."""
        params = {"execution_id": p.execution_id, "job_id": p.job_id, "attempt": p.attempt, "started_at": p.started_at}
        if p.kind != "finished":
            await conn.execute(_RUNNING, params | {"base": p.at, "grace": self._grace})
            return 0
        await conn.execute(_FINISHED, params | {"finished_at": p.at})
        return await self._backfills.finish(conn, p.execution_id, ok=p.ok, at=p.at)
