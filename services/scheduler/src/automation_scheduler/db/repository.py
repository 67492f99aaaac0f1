"""Queries of the scheduler schema (SQLAlchemy Core on an ``AsyncConnection``).

The fire loop's statements are set-based so a batch costs a fixed number of round trips whatever its
size: one claim (which also reads the transaction's clock), one spec load for cache misses only, one
statement that inserts the fire records and advances the next fire times (``unnest`` arrays), and the
outbox insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_scheduler.db.tables import SCHEMA, fires, running, schedules, triggers
from automation_scheduler.domain.schedules import ScheduleState, StoredSchedule, timing_of

WAKE_CHANNEL = "automation_scheduler_wake"
"""PostgreSQL NOTIFY channel: a schedule changed; the payload is its new next fire time (ISO) or empty."""

BACKLOG_SAMPLE_LIMIT = 100_000
# A literal, not a bind parameter: a generic prepared plan can then still prove the partial index's predicate.
ACTIVE: ColumnElement[str] = literal_column("'active'")


@dataclass(frozen=True, slots=True)
class DueRow:
    """A claimed due schedule (locked until the fire transaction ends)."""

    job_id: uuid.UUID
    account_id: uuid.UUID
    job_version: int
    expression: str | None
    timezone: str
    anchor: datetime
    next_fire_at: datetime
    runs_fired: int = 0
    run_parameters: dict[str, Any] | None = None
    """The job version's scheduled runs' parameters, resolved when it was applied (None: resolve them)."""


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One scheduled slot's record to insert."""

    job_id: uuid.UUID
    nominal_time: datetime
    outcome: str
    job_version: int
    execution_id: uuid.UUID | None
    fired_at: datetime | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Advance:
    """New bookkeeping of a fired (or stopped) schedule."""

    job_id: uuid.UUID
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    state: str | None = None
    """A new state (``completed``), or None to keep it."""


async def db_now(conn: AsyncConnection) -> datetime:
    """The transaction's timestamp: the one clock every replica agrees on."""
    value: datetime = (await conn.execute(select(func.now()))).scalar_one()
    return value


# --- job changes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockedSchedule:
    """A stored schedule row, locked, with its spec document."""

    stored: StoredSchedule
    spec: dict[str, Any] | None


def _stored(row: Any) -> StoredSchedule:
    state: ScheduleState = row.state
    return StoredSchedule(
        job_version=row.job_version,
        expression=row.expression,
        timezone=row.timezone,
        anchor=row.anchor,
        state=state,
        next_fire_at=row.next_fire_at,
        timing=timing_of(row.spec),
        runs_fired=row.runs_fired,
        paused_from=row.paused_from,
        last_fire_at=row.last_fire_at,
    )


async def lock_schedule(conn: AsyncConnection, job_id: uuid.UUID) -> LockedSchedule | None:
    """The stored schedule of a job, row-locked for the rest of the transaction."""
    t = schedules
    row = (
        await conn.execute(
            select(
                t.c.job_version,
                t.c.expression,
                t.c.timezone,
                t.c.anchor,
                t.c.state,
                t.c.next_fire_at,
                t.c.spec,
                t.c.runs_fired,
                t.c.paused_from,
                t.c.last_fire_at,
            )
            .where(t.c.job_id == job_id)
            .with_for_update()
        )
    ).one_or_none()
    return None if row is None else LockedSchedule(_stored(row), row.spec)


async def insert_schedule(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert a new schedule row; False when another transaction inserted the job first."""
    stmt = insert(schedules).values(**values).on_conflict_do_nothing(index_elements=["job_id"])
    result = await conn.execute(stmt.returning(schedules.c.job_id))
    return result.first() is not None


async def update_schedule(conn: AsyncConnection, job_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Overwrite a (locked) schedule row."""
    await conn.execute(schedules.update().where(schedules.c.job_id == job_id).values(**values))


async def notify_wake(conn: AsyncConnection, next_fire_at: datetime) -> None:
    """Tell every replica's fire loop, at commit, that a schedule may now be due at ``next_fire_at``."""
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": WAKE_CHANNEL, "payload": next_fire_at.isoformat()}
    )


# --- the fire loop -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """Due schedules locked by the current transaction, and the transaction's timestamp."""

    now: datetime | None
    rows: list[DueRow]


async def claim_due(conn: AsyncConnection, limit: int, lookahead: timedelta = timedelta(0)) -> Claim:
    """Lock up to ``limit`` active schedules due now or within ``lookahead``, earliest first, skipping
    rows others hold."""
    t = schedules
    horizon = func.now() + lookahead if lookahead else func.now()
    result = (
        await conn.execute(
            select(
                t.c.job_id,
                t.c.account_id,
                t.c.job_version,
                t.c.expression,
                t.c.timezone,
                t.c.anchor,
                t.c.next_fire_at,
                t.c.runs_fired,
                t.c.run_parameters,
                func.now().label("db_now"),
            )
            .where(and_(t.c.state == ACTIVE, t.c.next_fire_at <= horizon))
            .order_by(t.c.next_fire_at)
            .limit(limit)
            .with_for_update(of=t, skip_locked=True)
        )
    ).all()
    rows = [
        DueRow(
            job_id=r.job_id,
            account_id=r.account_id,
            job_version=r.job_version,
            expression=r.expression,
            timezone=r.timezone,
            anchor=r.anchor,
            next_fire_at=r.next_fire_at,
            runs_fired=r.runs_fired,
            run_parameters=r.run_parameters,
        )
        for r in result
    ]
    return Claim(now=result[0].db_now if result else None, rows=rows)


async def load_specs(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
    """The JobSpec snapshots of some schedules (only for parsed-schedule cache misses)."""
    t = schedules
    rows = (await conn.execute(select(t.c.job_id, t.c.spec).where(t.c.job_id.in_(list(job_ids))))).all()
    return {r.job_id: r.spec for r in rows}


_RECORD_FIRES = text(
    f"""
    WITH inserted AS (
        INSERT INTO "{SCHEMA}".fires
            (job_id, nominal_time, trigger, outcome, job_version, execution_id, fired_at, reason)
        SELECT r.job_id, r.nominal_time, 'schedule', r.outcome, r.job_version, r.execution_id, r.fired_at, r.reason
        FROM unnest(
            CAST(:job_ids AS uuid[]), CAST(:nominal_times AS timestamptz[]), CAST(:outcomes AS text[]),
            CAST(:job_versions AS integer[]), CAST(:execution_ids AS uuid[]), CAST(:fired_ats AS timestamptz[]),
            CAST(:reasons AS text[])
        ) AS r(job_id, nominal_time, outcome, job_version, execution_id, fired_at, reason)
        ON CONFLICT (job_id, nominal_time, trigger) DO NOTHING
        RETURNING job_id, nominal_time, outcome
    ), counted AS (
        SELECT job_id, count(*) AS fired FROM inserted WHERE outcome = 'fired' GROUP BY job_id
    ), advanced AS (
        UPDATE "{SCHEMA}".schedules AS s
        SET next_fire_at = u.next_fire_at,
            last_fire_at = COALESCE(u.last_fire_at, s.last_fire_at),
            state = COALESCE(u.state, s.state),
            runs_fired = s.runs_fired + COALESCE(c.fired, 0),
            updated_at = now()
        FROM unnest(
            CAST(:advance_ids AS uuid[]), CAST(:next_fire_ats AS timestamptz[]), CAST(:last_fire_ats AS timestamptz[]),
            CAST(:states AS text[])
        ) AS u(job_id, next_fire_at, last_fire_at, state)
        LEFT JOIN counted AS c ON c.job_id = u.job_id
        WHERE s.job_id = u.job_id
    )
    SELECT job_id, nominal_time, outcome FROM inserted
    """  # noqa: S608 - the schema name is a constant
)


async def record_fires(
    conn: AsyncConnection, records: Sequence[FireRecord], advances: Sequence[Advance]
) -> set[tuple[uuid.UUID, datetime, str]]:
    """In one statement: insert scheduled slots' records (slots already recorded are skipped) and store
    the claimed schedules' next fire times, states and run counters (the fired slots actually inserted).
    Returns the (job, nominal time, outcome) actually inserted."""
    result = await conn.execute(
        _RECORD_FIRES,
        {
            "job_ids": [r.job_id for r in records],
            "nominal_times": [r.nominal_time for r in records],
            "outcomes": [r.outcome for r in records],
            "job_versions": [r.job_version for r in records],
            "execution_ids": [r.execution_id for r in records],
            "fired_ats": [r.fired_at for r in records],
            "reasons": [r.reason for r in records],
            "advance_ids": [a.job_id for a in advances],
            "next_fire_ats": [a.next_fire_at for a in advances],
            "last_fire_ats": [a.last_fire_at for a in advances],
            "states": [a.state for a in advances],
        },
    )
    return {(r.job_id, r.nominal_time, r.outcome) for r in result}


async def running_of(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Executions of these jobs seen started, not finished and not expired, oldest first."""
    if not job_ids:
        return {}
    t = running
    rows = (
        await conn.execute(
            select(t.c.job_id, t.c.execution_id)
            .where(
                t.c.job_id.in_(list(job_ids)),
                t.c.finished_at.is_(None),
                t.c.expires_at > func.now(),
            )
            .order_by(t.c.started_at)
        )
    ).all()
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    for r in rows:
        found.setdefault(r.job_id, []).append(r.execution_id)
    return found


@dataclass(frozen=True, slots=True)
class Horizon:
    """What the fire loop needs to decide how long to sleep."""

    now: datetime
    earliest: datetime | None
    due: int


async def horizon(conn: AsyncConnection) -> Horizon:
    """The database clock, the earliest next fire time and how many schedules are due (bounded count)."""
    t = schedules
    active = and_(t.c.state == ACTIVE, t.c.next_fire_at.is_not(None))
    earliest = select(func.min(t.c.next_fire_at)).where(active).scalar_subquery()
    due_rows = select(t.c.job_id).where(active, t.c.next_fire_at <= func.now()).limit(BACKLOG_SAMPLE_LIMIT).subquery()
    due = select(func.count()).select_from(due_rows).scalar_subquery()
    row = (await conn.execute(select(func.clock_timestamp(), earliest, due))).one()
    return Horizon(now=row[0], earliest=row[1], due=int(row[2]))


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    """Schedule rows per state."""
    t = schedules
    rows = (await conn.execute(select(t.c.state, func.count()).group_by(t.c.state))).all()
    return {str(r[0]): int(r[1]) for r in rows}


async def count_running(conn: AsyncConnection) -> int:
    """Executions counted as running (seen started, not finished, not expired)."""
    t = running
    stmt = select(func.count()).where(t.c.finished_at.is_(None), t.c.expires_at > func.now())
    return int((await conn.execute(stmt)).scalar_one())


async def record_slots(
    conn: AsyncConnection, job_id: uuid.UUID, job_version: int, slots: Sequence[datetime], *, outcome: str, reason: str
) -> int:
    """Record scheduled slots that did not fire (e.g. ``paused``); returns how many were new."""
    if not slots:
        return 0
    rows = [
        {"job_id": job_id, "nominal_time": slot, "trigger": "schedule", "outcome": outcome, "job_version": job_version}
        | {"reason": reason}
        for slot in slots
    ]
    stmt = insert(fires).values(rows).on_conflict_do_nothing().returning(fires.c.nominal_time)
    return len((await conn.execute(stmt)).all())


async def replace_triggers(conn: AsyncConnection, job_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> bool:
    """Make ``rows`` the job's triggers; True when the set of its patterns changed (bindings to update)."""
    t = triggers
    old = set((await conn.execute(delete(t).where(t.c.job_id == job_id).returning(t.c.pattern))).scalars())
    if rows:
        await conn.execute(insert(t).values([{"job_id": job_id, **row} for row in rows]))
    return old != {row["pattern"] for row in rows}
