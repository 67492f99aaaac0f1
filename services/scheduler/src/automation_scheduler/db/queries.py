"""Read queries behind the HTTP API (keyset pagination, newest fires first)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_scheduler.db.tables import event_fires, fires, schedules


async def list_schedules(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID | None,
    states: tuple[str, ...],
    after: uuid.UUID | None,
    limit: int,
) -> list[Row[Any]]:
    """Schedules ordered by job id, after the cursor; ``account_id`` None means every account."""
    t = schedules
    conditions: list[ColumnElement[bool]] = [t.c.state.in_(states)]
    if account_id is not None:
        conditions.append(t.c.account_id == account_id)
    if after is not None:
        conditions.append(t.c.job_id > after)
    stmt = select(t).where(and_(*conditions)).order_by(t.c.job_id).limit(limit)
    return list((await conn.execute(stmt)).all())


async def get_schedule(conn: AsyncConnection, job_id: uuid.UUID) -> Row[Any] | None:
    """One schedule row."""
    return (await conn.execute(select(schedules).where(schedules.c.job_id == job_id))).one_or_none()


async def list_fires(
    conn: AsyncConnection,
    job_id: uuid.UUID,
    *,
    before: tuple[datetime, str] | None,
    outcome: str | None,
    limit: int,
) -> list[Row[Any]]:
    """A job's slot records, newest nominal time first (then by trigger), before the cursor."""
    t = fires
    conditions: list[ColumnElement[bool]] = [t.c.job_id == job_id]
    if outcome is not None:
        conditions.append(t.c.outcome == outcome)
    if before is not None:
        conditions.append(tuple_(t.c.nominal_time, t.c.trigger) < tuple_(*before))
    stmt = select(t).where(and_(*conditions)).order_by(t.c.nominal_time.desc(), t.c.trigger.desc()).limit(limit)
    return list((await conn.execute(stmt)).all())


async def list_event_fires(
    conn: AsyncConnection, job_id: uuid.UUID, *, before: tuple[datetime, str] | None, limit: int
) -> list[Row[Any]]:
    """What events did to a job, newest first (then by event id), before the cursor."""
    t = event_fires
    conditions: list[ColumnElement[bool]] = [t.c.job_id == job_id]
    if before is not None:
        conditions.append(tuple_(t.c.recorded_at, t.c.event_id) < tuple_(*before))
    stmt = select(t).where(and_(*conditions)).order_by(t.c.recorded_at.desc(), t.c.event_id.desc()).limit(limit)
    return list((await conn.execute(stmt)).all())
