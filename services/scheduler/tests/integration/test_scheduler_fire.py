"""Job events in, run.requested out: one scheduler against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from automation_contracts import RunRequested
from automation_db import schema_drift
from automation_messaging import REASON_HEADER
from automation_scheduler.bootstrap import Scheduler
from automation_scheduler.consumers import JOB_EVENTS_QUEUE
from automation_scheduler.db.tables import fires, metadata, schedules
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.testing import Bus, Jobs
from automation_testing import wait_until

pytestmark = pytest.mark.integration


def scheduler_of(app: FastAPI) -> Scheduler:
    scheduler: Scheduler = app.state.scheduler
    return scheduler


async def schedule_row(app: FastAPI, job_id: uuid.UUID) -> Any:
    async with scheduler_of(app).engine.connect() as conn:
        return (await conn.execute(select(schedules).where(schedules.c.job_id == job_id))).one_or_none()


async def fire_rows(app: FastAPI, job_id: uuid.UUID) -> list[Any]:
    async with scheduler_of(app).engine.connect() as conn:
        stmt = select(fires).where(fires.c.job_id == job_id).order_by(fires.c.nominal_time)
        return list((await conn.execute(stmt)).all())


async def runs_at_least(bus: Bus, job_ids: tuple[uuid.UUID, ...], n: int) -> list[RunRequested] | None:
    """The first job's runs once every job has at least ``n`` (None before)."""
    if all(len(bus.runs_of(j)) >= n for j in job_ids):
        return bus.runs_of(job_ids[0])
    return None


def acked() -> float:
    """Job events the consumer has acked so far (all handled, whatever the outcome)."""
    value = REGISTRY.get_sample_value(
        "automation_messages_consumed_total",
        {"service": "scheduler", "queue": JOB_EVENTS_QUEUE, "outcome": "acked"},
    )
    return value or 0.0


async def handled(count: int, since: float) -> None:
    async def probe() -> bool:
        return acked() >= since + count

    await wait_until(probe, what=f"{count} job events handled")


async def test_models_and_migrations_agree(app: FastAPI, database_url: str) -> None:
    assert await schema_drift(database_url, metadata) == []


async def test_every_second_job_fires_run_requested_with_deterministic_ids(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    job_id = uuid.uuid4()
    event = jobs.changed(job_id, schedule="@every 1s")
    await bus.publish(event)

    runs = await wait_until(
        lambda: runs_at_least(bus, (job_id,), 2), timeout=4.5, what="two run.requested of the @every 1s job"
    )
    first, second = runs[0], runs[1]
    assert first.scheduled_for is not None
    assert second.scheduled_for is not None
    assert first.scheduled_for < second.scheduled_for
    assert second.scheduled_for - first.scheduled_for == timedelta(seconds=1)
    for run in runs:
        assert run.scheduled_for is not None
        assert run.execution_id == execution_id_for(job_id, run.scheduled_for)
        assert (run.trigger, run.attempt, run.job_version, run.account_id) == ("schedule", 1, 1, jobs.account_id)
        assert run.parameters == {"site": "fra1"}
        assert run.job.schedule == "@every 1s"
        # @every fires on the anchor's grid: the job's creation time + k seconds
        anchor = datetime.fromisoformat(event.data["changed_at"])
        assert (run.scheduled_for - anchor) % timedelta(seconds=1) == timedelta(0)
    assert len({run.execution_id for run in runs}) == len(runs)
    # The AMQP envelope: the job's priority, the execution id as message id, and the publish stamp,
    # which is never before the slot (the dispatcher publishes a slot decided ahead at its time).
    for run, message in [(r, m) for r, m in bus.runs if r.job_id == job_id]:
        assert run.scheduled_for is not None
        assert message.priority == run.job.priority == 5
        assert message.message_id == str(run.execution_id)
        published = message.headers["x-published-at"]
        assert isinstance(published, int)
        assert published >= int(run.scheduled_for.timestamp() * 1000)
    recorded = {(r.nominal_time, r.execution_id) for r in await fire_rows(app, job_id) if r.outcome == "fired"}
    assert {(run.scheduled_for, run.execution_id) for run in runs} <= recorded


async def test_an_older_version_is_ignored(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, version=2, schedule="0 0 1 1 *"))
    await wait_until(lambda: schedule_row(app, job_id), what="the schedule row")
    before = acked()
    await bus.publish(jobs.changed(job_id, version=1, schedule="@every 1s"))
    await bus.publish(jobs.changed(job_id, version=2, schedule="@every 1s"))  # same version: ignored too
    await handled(2, before)
    row = await schedule_row(app, job_id)
    assert (row.job_version, row.expression, row.state) == (2, "0 0 1 1 *", "active")
    assert row.next_fire_at.month == 1
    assert row.next_fire_at.day == 1
    assert bus.runs_of(job_id) == []


async def test_disable_and_delete_stop_fires(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    paused, deleted, sentinel = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for job_id in (paused, deleted):
        await bus.publish(jobs.changed(job_id, schedule="@every 1s"))
    await wait_until(
        lambda: runs_at_least(bus, (paused, deleted), 1),
        timeout=4,
        what="both jobs firing",
    )
    await bus.publish(jobs.changed(paused, version=2, schedule="@every 1s", enabled=False))
    await bus.publish(jobs.deleted(deleted, version=2))

    async def stopped() -> bool:
        rows = [await schedule_row(app, j) for j in (paused, deleted)]
        return [(r.state, r.next_fire_at) for r in rows] == [("paused", None), ("deleted", None)]

    await wait_until(stopped, what="paused and deleted states")
    fired_before = {j: len(bus.runs_of(j)) for j in (paused, deleted)}
    # a sentinel firing twice proves the loop went past at least one slot of the stopped jobs
    await bus.publish(jobs.changed(sentinel, schedule="@every 1s"))
    await wait_until(lambda: runs_at_least(bus, (sentinel,), 2), timeout=4.5, what="the sentinel firing twice")
    assert {j: len(bus.runs_of(j)) for j in (paused, deleted)} == fired_before
    assert len(await fire_rows(app, paused)) == fired_before[paused]


async def test_a_delete_before_the_create_leaves_a_tombstone(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.deleted(job_id, version=2))
    await wait_until(lambda: schedule_row(app, job_id), what="the tombstone")
    before = acked()
    await bus.publish(jobs.changed(job_id, version=1, schedule="@every 1s"))
    await handled(1, before)
    row = await schedule_row(app, job_id)
    assert (row.state, row.job_version, row.spec, row.next_fire_at) == ("deleted", 2, None, None)


async def test_no_schedule_and_resume(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule=None))
    row = await wait_until(lambda: schedule_row(app, job_id), what="the row")
    assert (row.state, row.next_fire_at) == ("no_schedule", None)
    await bus.publish(jobs.changed(job_id, version=2, schedule="@every 1s", enabled=False))
    await bus.publish(jobs.changed(job_id, version=3, schedule="@every 1s"))
    await wait_until(lambda: runs_at_least(bus, (job_id,), 1), timeout=3.5, what="a fire after resuming")
    assert all(run.job_version == 3 for run in bus.runs_of(job_id))


async def test_bad_messages_are_dead_lettered_and_consumption_goes_on(app: FastAPI, bus: Bus, jobs: Jobs) -> None:
    await bus.dead_letters()  # start from an empty dead-letter queue
    await bus.publish(b"{not json", routing_key="job.created")
    invalid = jobs.changed(uuid.uuid4()).model_dump(mode="json")
    del invalid["data"]["job"]["steps"]
    await bus.publish(json.dumps(invalid).encode(), routing_key="job.created")
    never_fires = jobs.changed(uuid.uuid4(), schedule="0 0 30 2 *")
    await bus.publish(never_fires)
    valid = uuid.uuid4()
    await bus.publish(jobs.changed(valid, schedule=None))
    await wait_until(lambda: schedule_row(app, valid), what="the valid job event handled after the bad ones")

    collected: list[Any] = []

    async def three_dead() -> list[Any] | None:
        collected.extend(await bus.dead_letters())
        return collected if len(collected) >= 3 else None

    dead = await wait_until(three_dead, what="three dead letters")
    reasons = sorted(str(m.headers[REASON_HEADER]) for m in dead)
    assert len(reasons) == 3
    assert any("invalid message" in r for r in reasons)
    assert any("data.job" in r and "steps" in r for r in reasons)
    assert any(r.startswith("data.job.schedule:") for r in reasons)
    for message in dead:
        assert message.headers["x-original-queue"] == JOB_EVENTS_QUEUE
    assert await schedule_row(app, uuid.UUID(never_fires.data["job_id"])) is None
