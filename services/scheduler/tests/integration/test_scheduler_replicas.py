"""Two scheduler replicas on one database and vhost fire every slot exactly once, and one takes over
from the other without losing a slot."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from automation_scheduler.app import create_app
from automation_scheduler.bootstrap import Scheduler
from automation_scheduler.db.tables import fires, outbox
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.testing import Bus, Jobs
from automation_testing import wait_until

pytestmark = pytest.mark.integration
JOB_COUNT = 8
SECOND = timedelta(seconds=1)


async def test_two_replicas_fire_each_slot_exactly_once(
    make_settings: Callable[..., SchedulerSettings], amqp_url: str
) -> None:
    # Small batches make the replicas interleave on the same due rows.
    settings = make_settings(scheduler_batch_size=3)
    apps = [create_app(settings), create_app(settings)]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        replicas: list[Scheduler] = [app.state.scheduler for app in apps]
        bus = Bus(amqp_url)
        await bus.open()
        stack.push_async_callback(bus.close)

        jobs = Jobs()
        job_ids = [uuid.uuid4() for _ in range(JOB_COUNT)]
        anchors: dict[uuid.UUID, datetime] = {}
        for job_id in job_ids:
            event = jobs.changed(job_id, schedule="@every 1s")
            anchors[job_id] = datetime.fromisoformat(event.data["changed_at"])
            await bus.publish(event)

        async def each_fired(n: int) -> bool:
            return all(len(bus.runs_of(j)) >= n for j in job_ids)

        await wait_until(lambda: each_fired(2), timeout=4, what="every job fired twice by two replicas")
        # Replica 0 dies (its fire loop stops); replica 1 must carry on without a gap.
        await replicas[0].fire_loop.stop()
        fired_before = {j: len(bus.runs_of(j)) for j in job_ids}

        async def each_fired_again() -> bool:
            return all(len(bus.runs_of(j)) >= fired_before[j] + 1 for j in job_ids)

        await wait_until(each_fired_again, timeout=3, what="replica 1 firing alone")
        await replicas[1].fire_loop.stop()

        engine = replicas[1].engine

        async def drained() -> int | None:
            async with engine.connect() as conn:
                pending = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
                fired = (
                    await conn.execute(select(func.count()).select_from(fires).where(fires.c.outcome == "fired"))
                ).scalar_one()
            return fired if pending == 0 and len(bus.runs) == fired else None

        fired_count = await wait_until(drained, what="the outbox drained and every fire received")
        async with engine.connect() as conn:
            records = (await conn.execute(select(fires).order_by(fires.c.job_id, fires.c.nominal_time))).all()

    # Each (job, nominal time) was requested exactly once ...
    requested = Counter((run.job_id, run.scheduled_for) for run, _ in bus.runs)
    assert all(n == 1 for n in requested.values()), [k for k, n in requested.items() if n > 1]
    assert sum(requested.values()) == fired_count == sum(r.fired for r in (s.fire_loop for s in replicas))
    # ... matches the fires table, with the deterministic execution id ...
    recorded = {(r.job_id, r.nominal_time) for r in records if r.outcome == "fired"}
    assert set(requested) == recorded
    for run, _ in bus.runs:
        assert run.scheduled_for is not None
        assert run.execution_id == execution_id_for(run.job_id, run.scheduled_for)
    # ... and every slot the schedules imply between a job's first and last fire has its one outcome.
    for job_id in job_ids:
        slots = [r.nominal_time for r in records if r.job_id == job_id]
        assert slots, f"job {job_id} never fired"
        assert all((slot - anchors[job_id]) % SECOND == timedelta(0) for slot in slots)
        expected = [slots[0] + k * SECOND for k in range(len(slots))]
        assert slots == expected, f"gap or double in the slots of job {job_id}"
        assert len(slots) >= fired_before[job_id] + 1
