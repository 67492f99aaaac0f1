"""Periodic housekeeping: the schedules-by-state and running gauges, and the retention cleanup.

The cleanup deletes, in chunks so no statement holds many locks for long, what is older than
``AUTOMATION_SCHEDULER_FIRE_RETENTION_HOURS``: fire and event-fire records (by ``recorded_at``, served
by BRIN indexes), running-state rows finished or expired that long ago, and completed backfills with
their runs. Every replica runs it; concurrent deletes of the same rows are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_core.logging import get_logger
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import SCHEDULE_STATES, SCHEMA

log = get_logger(__name__)
CLEANUP_CHUNK = 5000
MAX_CHUNKS_PER_TABLE = 200


async def sample_states(engine: AsyncEngine) -> None:
    """Set the schedules-by-state and running-executions gauges from the tables."""
    async with engine.connect() as conn:
        counts = await repo.count_by_state(conn)
        running = await repo.count_running(conn)
    for state in SCHEDULE_STATES:
        metrics.SCHEDULES.labels(state).set(counts.get(state, 0))
    metrics.RUNNING.set(running)


def _chunked_delete(table: str, condition: str) -> TextClause:
    return text(
        f'DELETE FROM "{SCHEMA}".{table} WHERE ctid = ANY(ARRAY('  # noqa: S608 - constants only
        f'SELECT ctid FROM "{SCHEMA}".{table} WHERE {condition} LIMIT :chunk))'
    )


CLEANUPS: dict[str, TextClause] = {
    "fires": _chunked_delete("fires", "recorded_at < :cutoff"),
    "event_fires": _chunked_delete("event_fires", "recorded_at < :cutoff"),
    "running": _chunked_delete("running", "COALESCE(finished_at, expires_at) < :cutoff"),
    "backfill_runs": _chunked_delete(
        "backfill_runs",
        f'backfill_id IN (SELECT id FROM "{SCHEMA}".backfills WHERE completed_at < :cutoff)',  # noqa: S608
    ),
    "backfills": _chunked_delete(
        "backfills",
        f'completed_at < :cutoff AND NOT EXISTS (SELECT 1 FROM "{SCHEMA}".backfill_runs r'  # noqa: S608
        " WHERE r.backfill_id = backfills.id)",
    ),
}


async def cleanup(engine: AsyncEngine, retention: timedelta) -> dict[str, int]:
    """Delete what is older than ``retention``; returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    for table, statement in CLEANUPS.items():
        total = 0
        for _ in range(MAX_CHUNKS_PER_TABLE):
            async with engine.begin() as conn:
                cutoff = await repo.db_now(conn) - retention
                result = await conn.execute(statement, {"cutoff": cutoff, "chunk": CLEANUP_CHUNK})
            count = int(result.rowcount or 0)
            total += count
            if count < CLEANUP_CHUNK:
                break
        deleted[table] = total
        if total:
            metrics.CLEANUP_DELETED.labels(table).inc(total)
    if any(deleted.values()):
        log.info("retention_cleanup", **deleted)
    return deleted


class Periodic:
    """Runs ``work`` every ``interval`` seconds in its own task (at once on start, and when poked)."""

    def __init__(self, name: str, work: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._work = work
        self._interval = interval
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"scheduler-{self._name}")

    def poke(self) -> None:
        """Run again soon (coalesces several pokes into one run)."""
        self._poked.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._poked.clear()
            try:
                await self._work()
            except Exception as exc:
                log.warning(f"{self._name}_failed", error=repr(exc), exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=self._interval)
