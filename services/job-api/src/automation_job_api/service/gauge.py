"""Gauges kept current with one cheap ``COUNT … GROUP BY`` per refresh: jobs by state, stored dead letters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.logging import get_logger
from automation_job_api.db.tables import DeadLetter, Job
from automation_job_api.metrics import set_dead_letter_counts, set_job_counts

log = get_logger(__name__)


class Recount:
    """Runs ``refresh`` every ``interval`` seconds and soon after :meth:`poke` (something changed)."""

    def __init__(self, refresh: Callable[[], Awaitable[Any]], interval: float, name: str) -> None:
        self._refresh = refresh
        self._interval = interval
        self._name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something changed: recount soon."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"job-api-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._refresh()
            except Exception as exc:  # noqa: BLE001 - a failed recount must not end the loop
                log.warning("gauge_refresh_failed", gauge=self._name, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)


class JobsGauge(Recount):
    """``automation_jobs{state}``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        super().__init__(self.refresh, interval, "jobs-gauge")
        self._sessions = sessions

    async def refresh(self) -> tuple[int, int]:
        """Recount now; returns (enabled, disabled)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(Job.enabled, func.count()).group_by(Job.enabled))).all()
        counts = {bool(enabled): int(count) for enabled, count in rows}
        enabled, disabled = counts.get(True, 0), counts.get(False, 0)
        set_job_counts(enabled, disabled)
        return enabled, disabled


class DeadLettersGauge(Recount):
    """``automation_dead_letters_stored{original_queue}``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        super().__init__(self.refresh, interval, "dead-letters-gauge")
        self._sessions = sessions

    async def refresh(self) -> dict[str, int]:
        """Recount now; returns the count per original queue."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(DeadLetter.original_queue, func.count()).group_by(DeadLetter.original_queue)
                )
            ).all()
        counts = {str(queue): int(count) for queue, count in rows}
        set_dead_letter_counts(counts)
        return counts
