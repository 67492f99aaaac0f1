"""The fire loop: asyncio tasks (workers) that sleep until the earliest due time and fire due slots.

Each round: claim up to ``AUTOMATION_SCHEDULER_BATCH_SIZE`` schedules due now or within the lookahead
(``AUTOMATION_SCHEDULER_LOOKAHEAD_MS``) with ``FOR UPDATE SKIP LOCKED`` and, in that same transaction,
decide every due slot with the job's policies (:mod:`automation_scheduler.domain.policies`: misfire,
starting deadline, overlap against the running executions, ``max_runs``), record each slot's outcome
in ``fires`` (unique on job, nominal time and trigger), write a ``run.requested`` for each newly
recorded fire to the outbox (and the ``execution.cancel`` of the runs it replaces) and advance
``next_fire_at`` (the next nominal slot plus the job's jitter). Then commit and hand the fires to the
:class:`~automation_scheduler.dispatch.FireDispatcher`, which publishes each at its time. A slot
claimed ahead of its time is decided as of its time (it is one slot, never a misfire); a schedule
whose next slot also falls inside the lookahead is claimed again next round. A full batch loops at
once; otherwise the loop sleeps until half the lookahead before the earliest next fire time (at most
``AUTOMATION_SCHEDULER_MAX_SLEEP_SECONDS``), woken early by :class:`~automation_scheduler.wake.WakeSignal`
(this process's changes and other replicas' NOTIFYs).

Exactly once: the row lock keeps two replicas off the same schedule, the fires primary key turns any
second attempt at a slot into a no-op, and the fire record, the outbox row and the new next fire time
commit together, so a crash before the commit loses nothing and one after it repeats nothing (the
outbox row is published by a relay if this process dies before its dispatcher did).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_core.logging import get_logger
from automation_messaging import enqueue
from automation_messaging.broker import RawMessage
from automation_messaging.outbox import insert_prepared
from automation_schedule import ScheduleError
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import outbox
from automation_scheduler.dispatch import Dispatch, FireDispatcher
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_job
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.domain.policies import FirePolicy, RowPlan, plan_row
from automation_scheduler.messages import (
    Outgoing,
    cancel_execution,
    render_run,
    run_message,
    run_requested,
    run_template,
)
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.wake import WakeListener, WakeSignal

log = get_logger(__name__)
CONTENTION_BACKOFF_SECONDS = 0.01
ERROR_BACKOFF_SECONDS = 1.0
MISFIRE_OUTCOMES = ("missed", "coalesced", "dropped")
GC_FREEZE_STEP = 2000
"""Cached schedules (and templates) added that call for a ``gc.freeze()``..."""
GC_FREEZE_INTERVAL_SECONDS = 5.0
"""... and the longest time between two (long-lived objects are also made lazily: caches, imports)."""
MAX_TEMPLATES = 20_000
"""Most ``run.requested`` templates kept (about 1.3 KB each); beyond, a fire renders its job's (~30 µs)."""
YIELD_EVERY = 64
"""Rows planned between two yields to the event loop (the dispatcher must not wait on a long batch)."""


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
    misfired_jobs: int = 0
    """Schedules that had more than one slot due (after downtime, a pause, or a backlog)."""
    horizon: repo.Horizon | None = None
    """The table as the batch left it: earliest next fire time and due backlog."""
    horizon_read_at: float = 0.0
    dispatch: list[Dispatch] = field(default_factory=list)
    """What the dispatcher publishes after the commit."""


def scheduled_run(row: repo.DueRow, job: CompiledJob, nominal_time: datetime, now: datetime) -> Outgoing:
    """The ``run.requested`` of one scheduled slot, requested (and its CloudEvent timed) at ``now``."""
    event, exchange, routing_key = run_requested(
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
    return event.model_copy(update={"time": now}), exchange, routing_key


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
        dispatcher: FireDispatcher,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._cache = cache
        self._signal = signal
        self._dispatcher = dispatcher
        self._on_committed = on_committed
        self._lookahead = timedelta(milliseconds=settings.scheduler_lookahead_ms)
        self._lease = timedelta(seconds=settings.scheduler_publish_lease_seconds)
        self._templates: dict[uuid.UUID, tuple[int, str | None]] = {}
        """``run.requested`` templates by job: (version, template), oldest first."""
        self._template_slots = min(settings.scheduler_cache_size, MAX_TEMPLATES)
        self._listener = WakeListener(settings.database_url.get_secret_value(), signal)
        self._signals = [signal] + [signal.follower() for _ in range(settings.scheduler_fire_workers - 1)]
        """One alarm clock per worker: the first is the one changes and NOTIFYs poke; it pokes the others."""
        self._tasks: list[asyncio.Task[None]] = []
        self._frozen_at = 0
        """Cache entries at the last ``gc.freeze()``."""
        self._frozen_when = 0.0
        self._conns: dict[int, AsyncConnection] = {}
        self._stopping = False
        self.fired = 0
        """Runs this loop has requested since it was built."""

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def check(self) -> None:
        """Readiness: raises when the fire task or the dispatcher has died."""
        if not self.running:
            raise RuntimeError("fire loop is not running")
        await self._dispatcher.check()

    async def start(self) -> None:
        await self._listener.ensure()
        self._stopping = False
        gc.collect()  # once, at start: what the imports and the startup left
        self._freeze()
        await self._dispatcher.start()
        self._tasks = [
            asyncio.create_task(self._run(worker), name=f"scheduler-fire-loop-{worker}")
            for worker in range(len(self._signals))
        ]

    async def stop(self) -> None:
        """Finish the batch in flight, then stop (a cancelled batch rolls back and is fired by others)."""
        self._stopping = True
        self._signal.poke()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self._settings.shutdown_grace_seconds or None)
            if late:
                log.warning("fire_loop_stop_timed_out")
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
            self._tasks = []
        await self._dispatcher.stop(self._settings.shutdown_grace_seconds)
        for worker in list(self._conns):
            await self._drop_connection(worker, broken=False)
        await self._listener.close()

    async def _run(self, worker: int) -> None:
        """One worker: rounds on its own connection. Workers claim disjoint rows (``SKIP LOCKED``), so
        while one waits on the database for its round another computes its own; a worker that finds
        the due rows held by the others backs off briefly, as a replica does."""
        signal = self._signals[worker]
        if worker == 0:
            log.info("fire_loop_started", batch_size=self._settings.scheduler_batch_size, workers=len(self._signals))
        while not self._stopping:
            signal.arm()
            try:
                if worker == 0:
                    await self._listener.ensure()
                result = await self.fire_once(worker)
                deadline, delay = self._next_wake(result)
                if result.claimed >= self._settings.scheduler_batch_size:
                    continue  # a full batch: more may be due at once
            except Exception as exc:
                log.exception("fire_loop_failed", worker=worker, error=repr(exc))
                await self._drop_connection(worker)
                deadline, delay = None, ERROR_BACKOFF_SECONDS
            if not self._stopping:
                await signal.sleep(deadline, delay)
        if worker == 0:
            log.info("fire_loop_stopped")

    def _freeze(self) -> None:
        """Move what lives on (the modules, the schedule cache) out of the cyclic garbage collector's
        reach. A full collection walks every tracked object while holding the interpreter: with the
        code and a cache of 10,000 schedules that is 100-300 ms, during which the dispatcher thread
        cannot publish. Frozen objects are still freed by reference counting (cache entries hold no
        cycles); the young generations are collected first, so only a cycle that became garbage after
        surviving them is kept. A freeze costs a young collection (milliseconds)."""
        gc.collect(1)
        gc.freeze()
        self._frozen_when = time.monotonic()
        self._frozen_at = len(self._cache) + len(self._templates)

    def _next_wake(self, result: BatchResult) -> tuple[datetime | None, float]:
        """When to wake next: the earliest next fire time, measured on the database clock."""
        h = result.horizon
        assert h is not None
        metrics.DUE_BACKLOG.set(h.due)
        cap = self._settings.scheduler_max_sleep_seconds
        if h.earliest is None:
            return None, cap
        ahead = (h.earliest - h.now - self._lookahead / 2).total_seconds()
        delay = ahead - (time.monotonic() - result.horizon_read_at)
        if delay <= 0 and result.claimed == 0:
            # Due rows exist but another replica (or a job change) holds them: let it commit.
            delay = CONTENTION_BACKOFF_SECONDS
        return h.earliest, min(max(delay, 0.0), cap)

    async def _connection(self, worker: int) -> AsyncConnection:
        """The worker's own connection: no pool checkout or pre-ping per round."""
        conn = self._conns.get(worker)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conns[worker] = await self._engine.connect()
        return conn

    async def _drop_connection(self, worker: int, *, broken: bool = True) -> None:
        conn = self._conns.pop(worker, None)
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if broken:
                await conn.invalidate()
            await conn.close()

    async def fire_once(self, worker: int = 0) -> BatchResult:
        """One round in one transaction: claim and fire a batch of due schedules, then read the
        horizon (earliest next fire time, due backlog) the loop sleeps on."""
        started = time.perf_counter()
        conn = await self._connection(worker)
        async with conn.begin():
            result = await self._fire_in(conn)
            result.horizon = await repo.horizon(conn)
            result.horizon_read_at = time.monotonic()
        if not result.claimed:
            return result
        self._dispatcher.add(result.dispatch)
        metrics.FIRE_BATCH_DURATION.observe(time.perf_counter() - started)
        if (
            len(self._cache) + len(self._templates) - self._frozen_at >= GC_FREEZE_STEP
            or time.monotonic() - self._frozen_when >= GC_FREEZE_INTERVAL_SECONDS
        ):
            self._freeze()
        self._count(result)
        if result.cancels:
            self._on_committed()
        if result.misfired_jobs:
            log.info("misfires_handled", jobs=result.misfired_jobs, outcomes=dict(result.outcomes))
        log.debug(
            "fire_batch_committed", claimed=result.claimed, fired=len(result.fired), outcomes=dict(result.outcomes)
        )
        return result

    def _count(self, result: BatchResult) -> None:
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
        claim = await repo.claim_due(conn, self._settings.scheduler_batch_size, self._lookahead)
        # Publish times are kept on this host's clock (the loop's monotonic one, anchored to the wall clock
        # here), not mapped from the database's `now()`: that is the transaction's start, which would
        # shift every publish by however long the claim took.
        loop_now, wall_now = asyncio.get_running_loop().time(), time.time()
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
        for position, row in enumerate(claim.rows, 1):
            if position % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            job = jobs.get(row.job_id)
            if job is None:  # unusable: stop it rather than spin on it
                advances.append(repo.Advance(row.job_id, None, None))
                continue
            plan = plan_row(
                job.schedule,
                row.next_fire_at - job.offset,
                max(now, row.next_fire_at) - job.offset,  # a slot claimed ahead is decided as of its time
                FirePolicy.of(job.spec, threshold),
                max_records=self._settings.scheduler_max_missed_records,
                running=running.get(row.job_id, ()),
                runs_fired=row.runs_fired,
            )
            planned[row.job_id] = _Planned(row, job, plan)
            records.extend(self._records(row, plan, now, job.offset))
            if plan.unrecorded:
                result.unrecorded += 1
            elif len(plan.slots) > 1:
                result.misfired_jobs += 1
            fired = plan.fired
            advances.append(
                repo.Advance(
                    row.job_id,
                    None if plan.next_nominal is None else plan.next_nominal + job.offset,
                    fired[-1] if fired else None,
                    state="completed" if plan.completed else None,
                )
            )
        inserted = await repo.record_fires(conn, records, advances)
        cancels: list[Outgoing] = []
        cancelled: set[uuid.UUID] = set()
        runs: list[tuple[datetime, datetime, RawMessage]] = []
        for record in records:  # in due order; a slot recorded before (a replay) is not in `inserted`
            job_id, nominal, outcome = record.job_id, record.nominal_time, record.outcome
            if (job_id, nominal, outcome) not in inserted:
                continue
            result.outcomes[outcome] += 1
            if record.execution_id is None:
                continue
            item = planned[job_id]
            if item.plan.cancel and job_id not in cancelled:
                cancelled.add(job_id)
                reason = f"replaced by the run of {nominal.isoformat()} (overlap_policy replace)"
                cancels.extend(cancel_execution(execution_id, reason, now) for execution_id in item.plan.cancel)
                result.cancels += len(item.plan.cancel)
            due = nominal + item.job.offset
            at = max(now, due)  # when it is to be published: its time, or now for a late slot
            runs.append((at, due, self._run_message(item.row, item.job, record.execution_id, nominal, at)))
            result.fired.append((job_id, due))
        await enqueue(conn, outbox, cancels)
        rows = await insert_prepared(conn, outbox, [m for _, _, m in runs], [at + self._lease for at, _, _ in runs])
        result.dispatch = [
            Dispatch(
                due=loop_now + (at.timestamp() - wall_now),
                row_id=rows[message.message_id],
                message=message,
                late_by=(at - due).total_seconds(),
            )
            for at, due, message in runs
        ]
        return result

    def _run_message(
        self, row: repo.DueRow, job: CompiledJob, execution_id: uuid.UUID, nominal: datetime, at: datetime
    ) -> RawMessage:
        """The ``run.requested`` of a scheduled slot, filled into the job version's template."""
        template = self._template(row, job)
        if template is None:  # a spec the template cannot hold: the models, as for any other message
            event, _, _ = scheduled_run(row, job, nominal, at)
            return run_message(event.to_json_bytes(), execution_id, job.spec.priority)
        body = render_run(
            template,
            execution_id=execution_id,
            job_id=row.job_id,
            account_id=row.account_id,
            scheduled_for=nominal,
            requested_at=at,
        )
        return run_message(body, execution_id, job.spec.priority)

    def _template(self, row: repo.DueRow, job: CompiledJob) -> str | None:
        """The job version's ``run.requested`` with holes, rendered once and kept (a bounded cache)."""
        cached = self._templates.get(row.job_id)
        if cached is not None and cached[0] == row.job_version:
            return cached[1]
        template = run_template(job_version=row.job_version, spec=job.spec, parameters=job.parameters)
        self._templates.pop(row.job_id, None)
        self._templates[row.job_id] = (row.job_version, template)
        while len(self._templates) > self._template_slots:
            del self._templates[next(iter(self._templates))]
        return template

    @staticmethod
    def _records(row: repo.DueRow, plan: RowPlan, now: datetime, offset: timedelta) -> list[repo.FireRecord]:
        """The slots' records; a fired slot's ``fired_at`` is when its run is requested (its time, for a
        slot decided ahead of it)."""
        if plan.unrecorded:
            log.warning(
                "misfires_truncated",
                job_id=str(row.job_id),
                recorded=len(plan.slots),
                first_due=row.next_fire_at.isoformat(),
                fired=_iso(plan.fired[-1] if plan.fired else None),
            )
        return [
            repo.FireRecord(
                row.job_id,
                slot.nominal,
                slot.outcome,
                row.job_version,
                execution_id_for(row.job_id, slot.nominal) if slot.outcome == "fired" else None,
                max(now, slot.nominal + offset) if slot.outcome == "fired" else None,
                slot.reason,
            )
            for slot in plan.slots
        ]

    @staticmethod
    def _compile_row(row: repo.DueRow, spec: dict[str, Any] | None) -> CompiledJob:
        if spec is None or row.expression is None:
            raise ScheduleError("the schedule row has no job spec or expression")
        # The parameters resolved when the version was applied: resolving the parameters schema is
        # the dearest part of a cache miss (every fire, with more schedules than the cache holds).
        return compile_job(row.job_id, row.job_version, spec, row.anchor, parameters=row.run_parameters)

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
