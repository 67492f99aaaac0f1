"""Keeps the ``automation_jobs{state}`` gauge current with one cheap COUNT per refresh."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.logging import get_logger
from automation_job_api.db.tables import Job
from automation_job_api.metrics import set_job_counts

log = get_logger(__name__)


class JobsGauge:
    """Recounts jobs every ``interval`` seconds and soon after :meth:`poke` (a job changed)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        self._sessions = sessions
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """A job changed: recount soon."""
        self._wake.set()

    async def refresh(self) -> tuple[int, int]:
        """Recount now; returns (enabled, disabled)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(Job.enabled, func.count()).group_by(Job.enabled))).all()
        counts = {bool(enabled): int(count) for enabled, count in rows}
        enabled, disabled = counts.get(True, 0), counts.get(False, 0)
        set_job_counts(enabled, disabled)
        return enabled, disabled

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-api-jobs-gauge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a failed recount must not end the loop
                log.warning("jobs_gauge_refresh_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
