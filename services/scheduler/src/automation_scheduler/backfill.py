"""Backfill: the runs a job's schedule implies in a past window, released under their own cap.

:meth:`BackfillService.create` enumerates the slots of the job's current schedule (window, DST
policies and anchor included; no jitter) in ``[from, to)``, records each as a ``fires`` row with
outcome ``backfill`` and trigger ``backfill`` (a slot already backfilled is skipped: same record, same
execution id), queues them in ``backfill_runs`` and releases the first ``max_concurrency`` through the
outbox — all in one transaction. Each run's parameters are the defaults of the job's ``parameters``
schema, validated (:func:`~automation_scheduler.domain.firing.default_parameters`): a job whose defaults
do not validate cannot be backfilled (409 naming ``parameters``), and pending runs of a job changed
since into one whose defaults do not validate fail without running. Each run's execution id is
``uuid5(NAMESPACE, "<job>:<nominal time>:backfill")``.

Execution events finish runs (:meth:`BackfillService.finish`, called in the execution-event
transaction): a terminal event of a released run counts it succeeded or failed and releases the next
pending ones, so no more than ``max_concurrency`` runs of a backfill are out at once. The backfill row
is locked while counting, so concurrent events serialise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import ContractError, JobSpec
from automation_core.errors import Conflict, InvalidInput, NotFound
from automation_core.logging import get_logger
from automation_messaging import enqueue
from automation_schedule import ScheduleError
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import backfill_runs, backfills, fires, outbox, schedules
from automation_scheduler.domain.compiled import compile_spec
from automation_scheduler.domain.firing import backfill_execution_id, default_parameters
from automation_scheduler.domain.schedules import FireTimes
from automation_scheduler.messages import run_requested

log = get_logger(__name__)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Created:
    """A new backfill: its id and how many runs it created."""

    backfill_id: uuid.UUID
    slots: int


def window_slots(schedule: FireTimes, start: datetime, end: datetime, cap: int) -> list[datetime]:
    """The slots in ``[start, end)``, oldest first.

    Raises :class:`InvalidInput` (field ``to``) when there are more than ``cap``.
    """
    found: list[datetime] = []
    try:
        current = schedule.next_after(start - _TICK)
    except OverflowError:  # start is the first instant of the calendar: nothing lies before it
        current = schedule.next_after(start)
    while current is not None and current < end:
        if len(found) >= cap:
            raise InvalidInput(f"to: the window holds more than {cap} slots; backfill a shorter one", field="to")
        found.append(current)
        current = schedule.next_after(current)
    return found


class BackfillService:
    """Creates backfills and releases their runs."""

    def __init__(self, engine: AsyncEngine, *, max_slots: int, on_committed: Callable[[], None]) -> None:
        self._engine = engine
        self._max_slots = max_slots
        self._on_committed = on_committed

    async def create(
        self, job_id: uuid.UUID, account_id: uuid.UUID | None, start: datetime, end: datetime, max_concurrency: int
    ) -> Created:
        """Create the runs of ``[start, end)`` (``account_id`` None: any account, the admin)."""
        if end <= start:
            raise InvalidInput("to: must be after from", field="to")
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(select(schedules).where(schedules.c.job_id == job_id).with_for_update())
            ).one_or_none()
            if row is None or row.state == "deleted" or (account_id is not None and row.account_id != account_id):
                raise NotFound(f"no job {job_id}")
            if row.spec is None or row.expression is None:
                raise Conflict("the job has no schedule to backfill", field="schedule")
            now = await repo.db_now(conn)
            if end > now:
                raise InvalidInput(f"to: must not be in the future (now is {now.isoformat()})", field="to")
            spec = JobSpec.model_validate(row.spec)
            try:
                schedule = compile_spec(job_id, row.job_version, spec, row.anchor).schedule
            except ScheduleError as exc:
                raise Conflict(f"{exc.field}: the job cannot be backfilled: {exc.reason}", field=exc.field) from exc
            slots = window_slots(schedule, start, end, self._max_slots)
            backfill_id = uuid.uuid4()
            created = await self._record(conn, row, backfill_id, slots)
            await conn.execute(
                insert(backfills).values(
                    id=backfill_id,
                    job_id=job_id,
                    account_id=row.account_id,
                    job_version=row.job_version,
                    from_time=start,
                    to_time=end,
                    max_concurrency=max_concurrency,
                    total=len(created),
                    completed_at=None if created else now,
                )
            )
            released = await self.release(conn, backfill_id, now)
        metrics.FIRE_OUTCOMES.labels("backfill").inc(len(created))
        self._released(released)
        log.info("backfill_created", backfill_id=str(backfill_id), slots=len(created), released=released)
        return Created(backfill_id, len(created))

    async def _record(
        self, conn: AsyncConnection, row: Row[Any], backfill_id: uuid.UUID, slots: list[datetime]
    ) -> list[tuple[uuid.UUID, datetime]]:
        """Record the slots not backfilled before; returns their (execution id, nominal time)."""
        if not slots:
            return []
        values = [
            {
                "job_id": row.job_id,
                "nominal_time": slot,
                "trigger": "backfill",
                "outcome": "backfill",
                "job_version": row.job_version,
                "execution_id": backfill_execution_id(row.job_id, slot),
                "backfill_id": backfill_id,
            }
            for slot in slots
        ]
        stmt = insert(fires).values(values).on_conflict_do_nothing()
        inserted = (await conn.execute(stmt.returning(fires.c.execution_id, fires.c.nominal_time))).all()
        created = sorted(((r.execution_id, r.nominal_time) for r in inserted), key=lambda item: item[1])
        if created:
            await conn.execute(
                insert(backfill_runs).values(
                    [
                        {"execution_id": eid, "backfill_id": backfill_id, "nominal_time": at, "state": "pending"}
                        for eid, at in created
                    ]
                )
            )
        return created

    async def release(self, conn: AsyncConnection, backfill_id: uuid.UUID, now: datetime) -> int:
        """Release pending runs up to the backfill's cap (in the caller's transaction); returns how many."""
        b = (await conn.execute(select(backfills).where(backfills.c.id == backfill_id).with_for_update())).one()
        room = b.max_concurrency - (b.released - b.succeeded - b.failed)
        if room <= 0 or b.completed_at is not None:
            return 0
        r = backfill_runs
        picked = (
            await conn.execute(
                select(r.c.execution_id, r.c.nominal_time)
                .where(r.c.backfill_id == backfill_id, r.c.state == "pending")
                .order_by(r.c.nominal_time)
                .limit(room)
            )
        ).all()
        if not picked:
            return 0
        job = (
            await conn.execute(
                select(schedules.c.spec, schedules.c.job_version, schedules.c.state).where(
                    schedules.c.job_id == b.job_id
                )
            )
        ).one_or_none()
        ids = [p.execution_id for p in picked]
        if job is None or job.spec is None or job.state == "deleted":
            await self._abandon(conn, backfill_id, ids, now, "the job was deleted")
            return 0
        spec = JobSpec.model_validate(job.spec)
        try:
            parameters = default_parameters(spec.parameters)
        except ContractError as exc:
            await self._abandon(conn, backfill_id, ids, now, f"the job's parameter defaults do not validate: {exc}")
            return 0
        await conn.execute(update(r).where(r.c.execution_id.in_(ids)).values(state="released", released_at=now))
        await conn.execute(
            update(backfills).where(backfills.c.id == backfill_id).values(released=backfills.c.released + len(ids))
        )
        events = [
            run_requested(
                execution_id=p.execution_id,
                job_id=b.job_id,
                account_id=b.account_id,
                job_version=job.job_version,
                spec=spec,
                parameters=parameters,
                trigger="backfill",
                requested_at=now,
                scheduled_for=p.nominal_time,
                backfill_id=backfill_id,
            )
            for p in picked
        ]
        await enqueue(conn, outbox, events)
        return len(ids)

    async def _abandon(
        self, conn: AsyncConnection, backfill_id: uuid.UUID, ids: list[uuid.UUID], now: datetime, why: str
    ) -> None:
        """The job is gone or cannot run any more (``why``): the pending runs fail without running."""
        r = backfill_runs
        result = await conn.execute(
            update(r)
            .where(r.c.backfill_id == backfill_id, r.c.state == "pending")
            .values(state="failed", finished_at=now)
            .returning(r.c.execution_id)
        )
        failed = len(result.all())
        await self._count(conn, backfill_id, succeeded=0, failed=failed)
        log.warning("backfill_abandoned", backfill_id=str(backfill_id), failed=failed, first_batch=len(ids), reason=why)

    async def _count(self, conn: AsyncConnection, backfill_id: uuid.UUID, *, succeeded: int, failed: int) -> None:
        t = backfills
        done = t.c.succeeded + succeeded + t.c.failed + failed >= t.c.total
        await conn.execute(
            update(t)
            .where(t.c.id == backfill_id)
            .values(
                succeeded=t.c.succeeded + succeeded,
                failed=t.c.failed + failed,
                completed_at=func.coalesce(t.c.completed_at, case((done, func.now()), else_=None)),
            )
        )

    async def finish(self, conn: AsyncConnection, execution_id: uuid.UUID, *, ok: bool, at: datetime) -> int:
        """A terminal execution event: if it ends a released backfill run, count it and release more.

        Returns how many runs were released (0 when the execution is not a backfill run).
        """
        r = backfill_runs
        found = (
            await conn.execute(
                update(r)
                .where(r.c.execution_id == execution_id, r.c.state == "released")
                .values(state="succeeded" if ok else "failed", finished_at=at)
                .returning(r.c.backfill_id)
            )
        ).one_or_none()
        if found is None:
            return 0
        await conn.execute(select(backfills.c.id).where(backfills.c.id == found.backfill_id).with_for_update())
        await self._count(conn, found.backfill_id, succeeded=int(ok), failed=int(not ok))
        return await self.release(conn, found.backfill_id, await repo.db_now(conn))

    def _released(self, count: int) -> None:
        if count:
            metrics.FIRES.labels("backfill").inc(count)
            self._on_committed()

    def after_commit(self, released: int) -> None:
        """Metrics and the relay wake-up for runs released in a transaction that committed."""
        self._released(released)

    async def get(self, backfill_id: uuid.UUID, account_id: uuid.UUID | None) -> Row[Any]:
        """One backfill (another account's is a 404)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(backfills).where(backfills.c.id == backfill_id))).one_or_none()
        if row is None or (account_id is not None and row.account_id != account_id):
            raise NotFound(f"no backfill {backfill_id}")
        return row
