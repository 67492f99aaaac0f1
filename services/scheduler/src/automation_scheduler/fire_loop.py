"""The fire loop: one asyncio task that sleeps until the earliest due time and fires due slots.

Each round: claim up to ``AUTOMATION_SCHEDULER_BATCH_SIZE`` due schedules with ``FOR UPDATE SKIP
LOCKED`` and, in that same transaction, record every due slot in ``fires`` (unique on job and nominal
time), enqueue a ``run.requested`` for each newly recorded fire and advance ``next_fire_at``. Then
commit and wake the outbox relay. A full batch loops at once; otherwise the loop sleeps until the
earliest next fire time (at most ``AUTOMATION_SCHEDULER_MAX_SLEEP_SECONDS``), woken early by
:class:`~automation_scheduler.wake.WakeSignal` (this process's changes and other replicas' NOTIFYs).

Exactly once: the row lock keeps two replicas off the same schedule, the fires primary key turns any
second attempt at a slot into a no-op, and the fire record, the outbox row and the new next fire time
commit together, so a crash before the commit loses nothing and one after it repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import CloudEvent, RunRequested, build_event
from automation_core.logging import get_logger
from automation_messaging import enqueue
from automation_messaging.topology import COMMANDS, RUN_REQUESTED
from automation_schedule import ScheduleError
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import outbox
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_job
from automation_scheduler.domain.firing import DuePlan, execution_id_for, plan_due
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.wake import WakeListener, WakeSignal

log = get_logger(__name__)
SOURCE = "/automation/scheduler"
CONTENTION_BACKOFF_SECONDS = 0.01
ERROR_BACKOFF_SECONDS = 1.0


@dataclass(slots=True)
class BatchResult:
    """What one claim-and-fire transaction did."""

    claimed: int = 0
    fired: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    missed: int = 0
    horizon: repo.Horizon | None = None
    """The table as the batch left it: earliest next fire time and due backlog."""
    horizon_read_at: float = 0.0


def run_requested(row: repo.DueRow, job: CompiledJob, nominal_time: datetime, now: datetime) -> CloudEvent:
    """The ``run.requested`` command of one scheduled fire."""
    execution_id = execution_id_for(row.job_id, nominal_time)
    data = RunRequested(
        execution_id=execution_id,
        job_id=row.job_id,
        account_id=row.account_id,
        job_version=row.job_version,
        trigger="schedule",
        scheduled_for=nominal_time,
        requested_at=now,
        attempt=1,
        parameters=dict(job.parameters),
        job=job.spec,
    )
    return build_event(RUN_REQUESTED, source=SOURCE, data=data, id=str(execution_id), subject=str(row.job_id))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class FireLoop:
    """Owns the fire task; ``on_committed`` is called after each commit that enqueued runs."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: SchedulerSettings,
        cache: CompiledCache,
        signal: WakeSignal,
        *,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._cache = cache
        self._signal = signal
        self._on_committed = on_committed
        self._listener = WakeListener(settings.database_url.get_secret_value(), signal)
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._stopping = False
        self.fired = 0
        """Runs this loop has requested since it was built."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def check(self) -> None:
        """Readiness: raises when the fire task has died."""
        if not self.running:
            raise RuntimeError("fire loop is not running")

    async def start(self) -> None:
        await self._listener.ensure()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="scheduler-fire-loop")

    async def stop(self) -> None:
        """Finish the batch in flight, then stop (a cancelled batch rolls back and is fired by others)."""
        self._stopping = True
        self._signal.poke()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=self._settings.shutdown_grace_seconds or None)
            except TimeoutError:
                log.warning("fire_loop_stop_timed_out")
            self._task = None
        await self._drop_connection(broken=False)
        await self._listener.close()

    async def _run(self) -> None:
        log.info("fire_loop_started", batch_size=self._settings.scheduler_batch_size)
        while not self._stopping:
            self._signal.arm()
            try:
                await self._listener.ensure()
                result = await self.fire_once()
                deadline, delay = self._next_wake(result)
                if result.claimed >= self._settings.scheduler_batch_size:
                    continue  # a full batch: more may be due at once
            except Exception as exc:
                log.exception("fire_loop_failed", error=repr(exc))
                await self._drop_connection()
                deadline, delay = None, ERROR_BACKOFF_SECONDS
            if not self._stopping:
                await self._signal.sleep(deadline, delay)
        log.info("fire_loop_stopped")

    def _next_wake(self, result: BatchResult) -> tuple[datetime | None, float]:
        """When to wake next: the earliest next fire time, measured on the database clock."""
        h = result.horizon
        assert h is not None
        metrics.DUE_BACKLOG.set(h.due)
        cap = self._settings.scheduler_max_sleep_seconds
        if h.earliest is None:
            return None, cap
        delay = (h.earliest - h.now).total_seconds() - (time.monotonic() - result.horizon_read_at)
        if delay <= 0 and result.claimed == 0:
            # Due rows exist but another replica (or a job change) holds them: let it commit.
            delay = CONTENTION_BACKOFF_SECONDS
        return h.earliest, min(max(delay, 0.0), cap)

    async def _connection(self) -> AsyncConnection:
        """The loop's own connection: no pool checkout or pre-ping per round."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._engine.connect()
        return self._conn

    async def _drop_connection(self, *, broken: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if broken:
                await conn.invalidate()
            await conn.close()

    async def fire_once(self) -> BatchResult:
        """One round in one transaction: claim and fire a batch of due schedules, then read the
        horizon (earliest next fire time, due backlog) the loop sleeps on."""
        started = time.perf_counter()
        conn = await self._connection()
        async with conn.begin():
            result = await self._fire_in(conn)
            result.horizon = await repo.horizon(conn)
            result.horizon_read_at = time.monotonic()
        if not result.claimed:
            return result
        committed = datetime.now(UTC)
        metrics.FIRE_BATCH_DURATION.observe(time.perf_counter() - started)
        for _, nominal in result.fired:
            metrics.FIRE_LATENESS.observe(max((committed - nominal).total_seconds(), 0.0))
        if result.fired:
            self.fired += len(result.fired)
            metrics.FIRES.labels("schedule").inc(len(result.fired))
            self._on_committed()
        if result.missed:
            metrics.MISFIRES.labels("missed").inc(result.missed)
        log.debug("fire_batch_committed", claimed=result.claimed, fired=len(result.fired), missed=result.missed)
        return result

    async def _fire_in(self, conn: AsyncConnection) -> BatchResult:
        claim = await repo.claim_due(conn, self._settings.scheduler_batch_size)
        result = BatchResult(claimed=len(claim.rows))
        if claim.now is None:
            return result
        now = claim.now
        jobs = await self._compiled(conn, claim.rows)
        records: list[repo.FireRecord] = []
        advances: list[repo.Advance] = []
        due: dict[tuple[uuid.UUID, datetime], repo.DueRow] = {}
        for row in claim.rows:
            job = jobs.get(row.job_id)
            if job is None:  # unusable: stop it rather than spin on it
                advances.append(repo.Advance(row.job_id, None, None))
                continue
            plan = plan_due(
                job.schedule, row.next_fire_at, now, max_missed_records=self._settings.scheduler_max_missed_records
            )
            self._record(row, plan, now, records)
            if plan.fire is not None:
                due[(row.job_id, plan.fire)] = row
            advances.append(repo.Advance(row.job_id, plan.next_fire_at, plan.fire))
        inserted = await repo.record_fires(conn, records, advances)
        events: list[tuple[CloudEvent, str, str | None]] = []
        for job_id, nominal, outcome in inserted:
            if outcome == "missed":
                result.missed += 1
                continue
            row = due[(job_id, nominal)]
            events.append((run_requested(row, jobs[job_id], nominal, now), COMMANDS, RUN_REQUESTED))
            result.fired.append((job_id, nominal))
        await enqueue(conn, outbox, events)
        return result

    @staticmethod
    def _record(row: repo.DueRow, plan: DuePlan, now: datetime, records: list[repo.FireRecord]) -> None:
        for slot in plan.missed:
            records.append(repo.FireRecord(row.job_id, slot, "missed", row.job_version, None, None))
        if plan.truncated:
            metrics.MISFIRES.labels("unrecorded").inc()
            log.warning(
                "misfires_truncated",
                job_id=str(row.job_id),
                recorded=len(plan.missed),
                first_due=row.next_fire_at.isoformat(),
                fired=_iso(plan.fire),
            )
        elif plan.missed:
            log.info("misfires_coalesced", job_id=str(row.job_id), missed=len(plan.missed), fired=_iso(plan.fire))
        if plan.fire is not None:
            execution_id = execution_id_for(row.job_id, plan.fire)
            records.append(repo.FireRecord(row.job_id, plan.fire, "fired", row.job_version, execution_id, now))

    @staticmethod
    def _compile_row(row: repo.DueRow, spec: dict[str, Any] | None) -> CompiledJob:
        if spec is None or row.expression is None:
            raise ScheduleError("the schedule row has no job spec or expression")
        return compile_job(row.job_version, spec, row.expression, row.timezone, row.anchor)

    async def _compiled(self, conn: AsyncConnection, rows: list[repo.DueRow]) -> dict[uuid.UUID, CompiledJob]:
        """Parsed schedules of the claimed rows: from the cache, else parsed once from the stored spec."""
        jobs: dict[uuid.UUID, CompiledJob] = {}
        missing: list[repo.DueRow] = []
        for row in rows:
            cached = self._cache.get(row.job_id, row.job_version)
            if cached is None:
                missing.append(row)
            else:
                jobs[row.job_id] = cached
        if not missing:
            return jobs
        specs = await repo.load_specs(conn, [r.job_id for r in missing])
        for row in missing:
            spec = specs.get(row.job_id)
            try:
                job = self._compile_row(row, spec)
            except (ScheduleError, ValidationError) as exc:
                metrics.MISFIRES.labels("invalid_schedule").inc()
                log.warning("schedule_unusable", job_id=str(row.job_id), version=row.job_version, error=str(exc))
                continue
            self._cache.put(row.job_id, job)
            jobs[row.job_id] = job
        return jobs


async def sample_states(engine: AsyncEngine) -> None:
    """Set the schedules-by-state gauge from the table."""
    async with engine.connect() as conn:
        counts = await repo.count_by_state(conn)
    for state in ("active", "paused", "no_schedule", "deleted"):
        metrics.SCHEDULES.labels(state).set(counts.get(state, 0))


class StateSampler:
    """Samples :func:`sample_states` every ``interval`` seconds in its own task."""

    def __init__(self, engine: AsyncEngine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler-state-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await sample_states(self._engine)
            except Exception as exc:
                log.warning("state_sample_failed", error=repr(exc), exc_info=True)
            await asyncio.sleep(self._interval)
