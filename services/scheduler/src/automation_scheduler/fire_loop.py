"""The fire loop: one asyncio task that sleeps until the earliest due time and fires due slots.

Each round: claim up to ``AUTOMATION_SCHEDULER_BATCH_SIZE`` due schedules with ``FOR UPDATE SKIP
LOCKED`` and, in that same transaction, decide every due slot with the job's policies
(:mod:`automation_scheduler.domain.policies`: misfire, starting deadline, overlap against the running
executions, ``max_runs``), record each slot's outcome in ``fires`` (unique on job, nominal time and
trigger), enqueue a ``run.requested`` for each newly recorded fire (and the ``execution.cancel`` of the
runs it replaces) and advance ``next_fire_at`` (the next nominal slot plus the job's jitter). Then
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_core.logging import get_logger
from automation_messaging import enqueue
from automation_schedule import ScheduleError
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import outbox
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_job
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.domain.policies import FirePolicy, RowPlan, plan_row
from automation_scheduler.messages import Outgoing, cancel_execution, run_requested
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.wake import WakeListener, WakeSignal

log = get_logger(__name__)
CONTENTION_BACKOFF_SECONDS = 0.01
ERROR_BACKOFF_SECONDS = 1.0
MISFIRE_OUTCOMES = ("missed", "coalesced", "dropped")


@dataclass(slots=True)
class BatchResult:
    """What one claim-and-fire transaction did."""

    claimed: int = 0
    fired: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    """(job, due time) of each run requested."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Slots recorded, by outcome."""
    cancels: int = 0
    unrecorded: int = 0
    horizon: repo.Horizon | None = None
    """The table as the batch left it: earliest next fire time and due backlog."""
    horizon_read_at: float = 0.0


def scheduled_run(row: repo.DueRow, job: CompiledJob, nominal_time: datetime, now: datetime) -> Outgoing:
    """The ``run.requested`` of one scheduled slot."""
    return run_requested(
        execution_id=execution_id_for(row.job_id, nominal_time),
        job_id=row.job_id,
        account_id=row.account_id,
        job_version=row.job_version,
        spec=job.spec,
        parameters=job.parameters,
        trigger="schedule",
        requested_at=now,
        scheduled_for=nominal_time,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(slots=True)
class _Planned:
    """One claimed row's plan inside a batch."""

    row: repo.DueRow
    job: CompiledJob
    plan: RowPlan


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
        self._count(result, committed)
        if result.fired or result.cancels:
            self._on_committed()
        log.debug(
            "fire_batch_committed", claimed=result.claimed, fired=len(result.fired), outcomes=dict(result.outcomes)
        )
        return result

    def _count(self, result: BatchResult, committed: datetime) -> None:
        for _, due in result.fired:
            metrics.FIRE_LATENESS.observe(max((committed - due).total_seconds(), 0.0))
        if result.fired:
            self.fired += len(result.fired)
            metrics.FIRES.labels("schedule").inc(len(result.fired))
        for outcome, count in result.outcomes.items():
            metrics.FIRE_OUTCOMES.labels(outcome).inc(count)
            if outcome in MISFIRE_OUTCOMES:
                metrics.MISFIRES.labels(outcome).inc(count)
        if result.outcomes["dropped"]:
            metrics.DROPPED_FIRES.inc(result.outcomes["dropped"])
        if result.unrecorded:
            metrics.MISFIRES.labels("unrecorded").inc(result.unrecorded)
        if result.cancels:
            metrics.CANCELS.inc(result.cancels)

    async def _fire_in(self, conn: AsyncConnection) -> BatchResult:
        claim = await repo.claim_due(conn, self._settings.scheduler_batch_size)
        result = BatchResult(claimed=len(claim.rows))
        if claim.now is None:
            return result
        now = claim.now
        jobs = await self._compiled(conn, claim.rows)
        watched = [job_id for job_id, job in jobs.items() if job.spec.overlap_policy != "allow"]
        running = await repo.running_of(conn, watched)
        threshold = timedelta(seconds=self._settings.scheduler_misfire_threshold_seconds)
        records: list[repo.FireRecord] = []
        advances: list[repo.Advance] = []
        planned: dict[uuid.UUID, _Planned] = {}
        for row in claim.rows:
            job = jobs.get(row.job_id)
            if job is None:  # unusable: stop it rather than spin on it
                advances.append(repo.Advance(row.job_id, None, None))
                continue
            plan = plan_row(
                job.schedule,
                row.next_fire_at - job.offset,
                now - job.offset,
                FirePolicy.of(job.spec, threshold),
                max_records=self._settings.scheduler_max_missed_records,
                running=running.get(row.job_id, ()),
                runs_fired=row.runs_fired,
            )
            planned[row.job_id] = _Planned(row, job, plan)
            records.extend(self._records(row, plan, now))
            if plan.unrecorded:
                result.unrecorded += 1
            fired = plan.fired
            advances.append(
                repo.Advance(
                    row.job_id,
                    None if plan.next_nominal is None else plan.next_nominal + job.offset,
                    fired[-1] if fired else None,
                    state="completed" if plan.completed else None,
                    fired=len(fired),
                )
            )
        inserted = await repo.record_fires(conn, records, advances)
        events: list[Outgoing] = []
        cancelled: set[uuid.UUID] = set()
        for job_id, nominal, outcome in sorted(inserted):
            result.outcomes[outcome] += 1
            if outcome != "fired":
                continue
            item = planned[job_id]
            if job_id not in cancelled:
                cancelled.add(job_id)
                reason = f"replaced by the run of {nominal.isoformat()} (overlap_policy replace)"
                events.extend(cancel_execution(execution_id, reason, now) for execution_id in item.plan.cancel)
                result.cancels += len(item.plan.cancel)
            events.append(scheduled_run(item.row, item.job, nominal, now))
            result.fired.append((job_id, nominal + item.job.offset))
        await enqueue(conn, outbox, events)
        return result

    @staticmethod
    def _records(row: repo.DueRow, plan: RowPlan, now: datetime) -> list[repo.FireRecord]:
        if plan.unrecorded:
            log.warning(
                "misfires_truncated",
                job_id=str(row.job_id),
                recorded=len(plan.slots),
                first_due=row.next_fire_at.isoformat(),
                fired=_iso(plan.fired[-1] if plan.fired else None),
            )
        elif len(plan.slots) > 1:
            log.info(
                "misfires_handled",
                job_id=str(row.job_id),
                outcomes=dict(Counter(slot.outcome for slot in plan.slots)),
                fired=_iso(plan.fired[-1] if plan.fired else None),
            )
        return [
            repo.FireRecord(
                row.job_id,
                slot.nominal,
                slot.outcome,
                row.job_version,
                execution_id_for(row.job_id, slot.nominal) if slot.outcome == "fired" else None,
                now if slot.outcome == "fired" else None,
                slot.reason,
            )
            for slot in plan.slots
        ]

    @staticmethod
    def _compile_row(row: repo.DueRow, spec: dict[str, Any] | None) -> CompiledJob:
        if spec is None or row.expression is None:
            raise ScheduleError("the schedule row has no job spec or expression")
        return compile_job(row.job_id, row.job_version, spec, row.anchor)

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
