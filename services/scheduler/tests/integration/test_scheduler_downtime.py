"""After downtime, a schedule fires once for its latest due slot and records the others as coalesced
(misfire policy run_once, the default); a bare NOTIFY on the wake channel (as another replica sends)
wakes a sleeping fire loop."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from automation_scheduler.bootstrap import Scheduler
from automation_scheduler.db.repository import WAKE_CHANNEL
from automation_scheduler.db.tables import fires, schedules
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.testing import Bus, Jobs
from automation_testing import wait_until

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)


def coalesced_total() -> float:
    return REGISTRY.get_sample_value("automation_scheduler_misfires_total", {"reason": "coalesced"}) or 0.0


async def test_downtime_coalesces_into_one_fire_and_records_the_older_slots(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    scheduler: Scheduler = app.state.scheduler
    job_id = uuid.uuid4()
    anchor = datetime.now(UTC).replace(microsecond=0) - 5 * HOUR - 30 * timedelta(minutes=1)
    await bus.publish(jobs.changed(job_id, schedule="@every 1h", changed_at=anchor))

    async def row() -> Any:
        async with scheduler.engine.connect() as conn:
            return (await conn.execute(select(schedules).where(schedules.c.job_id == job_id))).one_or_none()

    created = await wait_until(row, what="the schedule row")
    assert created.next_fire_at == anchor + 6 * HOUR  # computed from now, on the anchor's grid
    coalesced_before = coalesced_total()

    # Pretend the scheduler was down since anchor + 1h: five slots are due. Another replica's change
    # reaches this loop only through NOTIFY (the loop sleeps up to 30 s otherwise).
    async with scheduler.engine.begin() as conn:
        await conn.execute(schedules.update().where(schedules.c.job_id == job_id).values(next_fire_at=anchor + HOUR))
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})

    runs = await wait_until(lambda: _runs(bus, job_id), timeout=5, what="the coalesced fire")
    assert len(runs) == 1
    assert runs[0].scheduled_for == anchor + 5 * HOUR
    assert runs[0].execution_id == execution_id_for(job_id, anchor + 5 * HOUR)
    async with scheduler.engine.connect() as conn:
        records = (
            await conn.execute(select(fires).where(fires.c.job_id == job_id).order_by(fires.c.nominal_time))
        ).all()
    assert [(r.nominal_time, r.outcome) for r in records] == [
        (anchor + k * HOUR, "coalesced" if k < 5 else "fired") for k in range(1, 6)
    ]
    assert all(r.execution_id is None for r in records[:-1])
    after = await row()
    assert after.next_fire_at == anchor + 6 * HOUR
    assert after.last_fire_at == anchor + 5 * HOUR
    assert coalesced_total() == coalesced_before + 4


async def _runs(bus: Bus, job_id: uuid.UUID) -> list[Any] | None:
    return bus.runs_of(job_id) or None
