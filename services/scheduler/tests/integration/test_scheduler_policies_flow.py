"""Policies through the running scheduler (real PostgreSQL and RabbitMQ): misfire skip / run_all /
starting deadline after a downtime, DST rules in Europe/Berlin, max_runs and one-offs completing, a
pause recorded as ``paused``, overlap ``forbid`` and ``replace`` from execution events, and the outcome
listing, and the retention cleanup. Downtime is simulated by moving ``next_fire_at`` into the past, never by waiting."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func

from automation_contracts import RunRequested
from automation_schedule import jitter_offset
from automation_scheduler.bootstrap import Scheduler
from automation_scheduler.db.tables import fires
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.maintenance import cleanup
from automation_scheduler.testing import Bus, Jobs, Tables
from automation_testing import wait_until

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def create(bus: Bus, jobs: Jobs, tables: Tables, schedule: str, **extra: Any) -> tuple[uuid.UUID, datetime]:
    """A job anchored 5 h 30 min ago (``@every 1h``: its next slot is in 30 min); returns (id, anchor)."""
    job_id = uuid.uuid4()
    anchor = datetime.now(UTC).replace(microsecond=0) - 5 * HOUR - 30 * timedelta(minutes=1)
    await bus.publish(jobs.changed(job_id, schedule=schedule, changed_at=anchor, **extra))
    await wait_until(lambda: tables.schedule(job_id), what="the schedule row")
    return job_id, anchor


def recorded(tables: Tables, job_id: uuid.UUID, count: int) -> Callable[[], Awaitable[list[Any] | None]]:
    async def probe() -> list[Any] | None:
        rows = await tables.fires(job_id)
        return rows if len(rows) >= count else None

    return probe


def runs(bus: Bus, job_id: uuid.UUID, count: int) -> Callable[[], Awaitable[list[RunRequested] | None]]:
    async def probe() -> list[RunRequested] | None:
        found = bus.runs_of(job_id)
        return found if len(found) >= count else None

    return probe


def outcomes(rows: list[Any]) -> list[tuple[datetime, str, str | None]]:
    return [(r.nominal_time, r.outcome, r.reason) for r in rows]


async def test_skip_records_every_missed_slot_and_resumes_at_the_next_future_one(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    job_id, anchor = await create(bus, jobs, tables, "@every 1h", misfire_policy="skip")
    missed_before = sample("automation_scheduler_fire_outcomes_total", outcome="missed")
    await tables.travel(job_id, next_fire_at=anchor + HOUR)
    rows = await wait_until(recorded(tables, job_id, 5), what="five missed slots")
    assert outcomes(rows) == [(anchor + k * HOUR, "missed", "misfire") for k in range(1, 6)]
    row = await tables.schedule(job_id)
    assert (row.state, row.next_fire_at, row.runs_fired) == ("active", anchor + 6 * HOUR, 0)
    assert sample("automation_scheduler_fire_outcomes_total", outcome="missed") == missed_before + 5

    listed = await client.get(f"/api/v1/schedules/{job_id}/fires", headers=admin, params={"outcome": "missed"})
    assert [item["outcome"] for item in listed.json()["items"]] == ["missed"] * 5
    fired = await client.get(f"/api/v1/schedules/{job_id}/fires", headers=admin, params={"outcome": "fired"})
    assert fired.json()["items"] == []
    bad = await client.get(f"/api/v1/schedules/{job_id}/fires", headers=admin, params={"outcome": "lost"})
    assert bad.status_code == 422


async def test_run_all_fires_the_newest_slots_up_to_the_cap(bus: Bus, jobs: Jobs, tables: Tables) -> None:
    job_id, anchor = await create(bus, jobs, tables, "@every 1h", misfire_policy="run_all", misfire_cap=3)
    await tables.travel(job_id, next_fire_at=anchor + HOUR)
    got = await wait_until(runs(bus, job_id, 3), what="three run_all fires")
    slots = [anchor + k * HOUR for k in (3, 4, 5)]
    assert sorted(run.scheduled_for for run in got if run.scheduled_for) == slots
    assert {run.execution_id for run in got} == {execution_id_for(job_id, slot) for slot in slots}
    rows = await tables.fires(job_id)
    assert outcomes(rows) == [
        (anchor + HOUR, "missed", "misfire"),
        (anchor + 2 * HOUR, "missed", "misfire"),
        *[(slot, "fired", None) for slot in slots],
    ]
    assert (await tables.schedule(job_id)).runs_fired == 3


async def test_a_fire_past_its_starting_deadline_is_dropped_and_counted(bus: Bus, jobs: Jobs, tables: Tables) -> None:
    job_id, anchor = await create(bus, jobs, tables, "@every 1h", starting_deadline_seconds=60)
    dropped_before = sample("automation_scheduler_dropped_fires_total")
    await tables.travel(job_id, next_fire_at=anchor + 4 * HOUR)
    rows = await wait_until(recorded(tables, job_id, 2), what="the dropped fire")
    assert outcomes(rows) == [(anchor + 4 * HOUR, "missed", "misfire"), (anchor + 5 * HOUR, "dropped", "deadline")]
    assert sample("automation_scheduler_dropped_fires_total") == dropped_before + 1
    assert bus.runs_of(job_id) == []


@pytest.mark.parametrize(
    ("window", "options", "expected"),
    [
        (
            ("2025-03-28T00:00:00Z", "2025-04-01T00:00:00Z"),
            {},  # spring forward, gap shift: 02:30 on the 30th fires at 03:00 CEST
            ["2025-03-28T01:30:00Z", "2025-03-29T01:30:00Z", "2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"],
        ),
        (
            ("2025-03-28T00:00:00Z", "2025-04-01T00:00:00Z"),
            {"dst_gap": "skip"},
            ["2025-03-28T01:30:00Z", "2025-03-29T01:30:00Z", "2025-03-31T00:30:00Z"],
        ),
        (
            ("2025-10-25T00:00:00Z", "2025-10-28T00:00:00Z"),
            {},  # fall back, overlap first: 02:30 on the 26th fires once, at +02:00
            ["2025-10-25T00:30:00Z", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"],
        ),
        (
            ("2025-10-25T00:00:00Z", "2025-10-28T00:00:00Z"),
            {"dst_overlap": "both"},
            ["2025-10-25T00:30:00Z", "2025-10-26T00:30:00Z", "2025-10-26T01:30:00Z", "2025-10-27T01:30:00Z"],
        ),
    ],
)
async def test_dst_rules_through_the_fire_loop_in_berlin(
    bus: Bus, jobs: Jobs, tables: Tables, window: tuple[str, str], options: dict[str, Any], expected: list[str]
) -> None:
    job_id = uuid.uuid4()
    start, end = window
    await bus.publish(
        jobs.changed(
            job_id,
            schedule="30 2 * * *",
            timezone="Europe/Berlin",
            start_at=start,
            end_at=end,
            misfire_policy="run_all",
            **options,
        )
    )

    async def completed() -> Any:
        row = await tables.schedule(job_id)
        return row if row is not None and row.state == "completed" else None

    row = await wait_until(completed, what="a schedule whose window has passed completing")
    assert row.next_fire_at is None
    # Time travel: the scheduler was down all through the window; run_all fires every slot of it.
    await tables.travel(job_id, state="active", next_fire_at=datetime.fromisoformat(expected[0]))
    got = await wait_until(runs(bus, job_id, len(expected)), what="the window's fires")
    assert sorted(run.scheduled_for for run in got if run.scheduled_for) == [
        datetime.fromisoformat(t) for t in expected
    ]
    await wait_until(completed, what="the schedule completing again after its last slot")


async def test_max_runs_and_one_offs_complete(bus: Bus, jobs: Jobs, tables: Tables) -> None:
    limited, once, sentinel = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await bus.publish(jobs.changed(limited, schedule="@every 1s", max_runs=2))
    at = (datetime.now(UTC) + 3 * SECOND).replace(microsecond=0)
    await bus.publish(jobs.changed(once, schedule=at.isoformat()))
    await wait_until(runs(bus, limited, 2), what="two runs of the limited job")
    await wait_until(runs(bus, once, 1), what="the one-off")

    async def both_completed() -> bool:
        rows = [await tables.schedule(j) for j in (limited, once)]
        return all(r.state == "completed" and r.next_fire_at is None for r in rows)

    await wait_until(both_completed, what="both jobs completed")
    assert (await tables.schedule(limited)).runs_fired == 2
    assert [r.scheduled_for for r in bus.runs_of(once)] == [at]
    await bus.publish(jobs.changed(sentinel, schedule="@every 1s"))
    await wait_until(runs(bus, sentinel, 2), what="a sentinel firing twice after completion")
    assert len(bus.runs_of(limited)) == 2
    assert len(bus.runs_of(once)) == 1


async def test_max_runs_counts_the_runs_recorded_not_the_slots_decided_again(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    """Found by hand: a slot decided a second time (its record already there, nothing inserted) still
    counted towards ``max_runs``, so the job completed after fewer runs than it allows."""
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule="@every 1s", max_runs=4))
    await wait_until(runs(bus, job_id, 2), what="two runs")
    first = next(r for r in await tables.fires(job_id) if r.outcome == "fired")
    await tables.travel(job_id, next_fire_at=first.nominal_time)  # as an edit used to set it back

    async def completed() -> Any:
        row = await tables.schedule(job_id)
        return row if row.state == "completed" else None

    row = await wait_until(completed, what="the job completed", timeout=20)
    await wait_until(runs(bus, job_id, 4), what="the fourth run published")
    fired = [r for r in await tables.fires(job_id) if r.outcome == "fired"]
    assert row.runs_fired == len(fired) == len(bus.runs_of(job_id)) == 4


async def test_jitter_delays_the_publish_time_and_keeps_the_nominal_time(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    job_id = uuid.uuid4()
    event = jobs.changed(job_id, schedule="@every 1s", jitter_seconds=0.8, max_runs=2)
    anchor = datetime.fromisoformat(event.data["changed_at"])
    offset = jitter_offset(str(job_id), 0.8)
    await bus.publish(event)
    shown = await wait_until(lambda: _shown(client, admin, job_id), what="the schedule")
    assert datetime.fromisoformat(shown["next_due_at"]) - datetime.fromisoformat(shown["next_fire_at"]) == offset
    got = await wait_until(runs(bus, job_id, 1), what="a jittered fire")
    assert got[0].scheduled_for is not None
    assert (got[0].scheduled_for - anchor) % SECOND == timedelta(0)  # the nominal time stays on the grid
    fired = [r for r in await tables.fires(job_id) if r.outcome == "fired"]
    assert fired[0].fired_at >= fired[0].nominal_time + offset


async def _shown(client: httpx.AsyncClient, admin: dict[str, str], job_id: uuid.UUID) -> dict[str, Any] | None:
    resp = await client.get(f"/api/v1/schedules/{job_id}", headers=admin)
    body: dict[str, Any] = resp.json()
    return body if resp.status_code == 200 and body["next_fire_at"] else None


async def test_a_resumed_job_records_the_paused_slots_and_fires_none_of_them(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    job_id, anchor = await create(bus, jobs, tables, "@every 1h")
    await bus.publish(jobs.changed(job_id, version=2, schedule="@every 1h", enabled=False))

    async def paused() -> Any:
        row = await tables.schedule(job_id)
        return row if row.state == "paused" else None

    row = await wait_until(paused, what="the job paused")
    assert (row.next_fire_at, row.paused_from) == (None, anchor + 6 * HOUR)
    await tables.travel(job_id, paused_from=anchor + HOUR)  # as if paused 4 h 30 min ago
    await bus.publish(jobs.changed(job_id, version=3, schedule="@every 1h"))
    rows = await wait_until(recorded(tables, job_id, 5), what="the paused slots")
    assert outcomes(rows) == [(anchor + k * HOUR, "paused", "job paused") for k in range(1, 6)]
    row = await tables.schedule(job_id)
    assert (row.state, row.next_fire_at, row.paused_from) == ("active", anchor + 6 * HOUR, None)
    assert bus.runs_of(job_id) == []


async def test_forbid_skips_fires_while_a_run_is_running(bus: Bus, jobs: Jobs, tables: Tables) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule="@every 1s", overlap_policy="forbid"))
    first = (await wait_until(runs(bus, job_id, 1), what="the first run"))[0]
    await bus.execution_event("execution.started", first)
    retry_at = (datetime.now(UTC) + 5 * SECOND).isoformat()
    await bus.execution_event("execution.failed", first, will_retry=True, next_attempt_at=retry_at)

    async def skipped() -> list[Any] | None:
        rows = [r for r in await tables.fires(job_id) if r.outcome == "skipped"]
        return rows if len(rows) >= 2 else None

    overlap = await wait_until(skipped, what="fires skipped while the first run runs and retries")
    assert {r.reason for r in overlap} == {"overlap"}
    assert [r.finished_at for r in await tables.running(job_id)] == [None]
    await bus.execution_event("execution.succeeded", first)
    last_skipped = max(r.nominal_time for r in await tables.fires(job_id) if r.outcome == "skipped")

    async def fired_again() -> bool:
        return any(r.scheduled_for and r.scheduled_for > last_skipped for r in bus.runs_of(job_id))

    await wait_until(fired_again, what="a fire after the run finished")
    skipped_slots = {r.nominal_time for r in await tables.fires(job_id) if r.outcome == "skipped"}
    assert not skipped_slots & {run.scheduled_for for run in bus.runs_of(job_id)}
    assert [r.finished_at is not None for r in await tables.running(job_id)] == [True]


async def test_replace_cancels_the_running_run_then_fires(bus: Bus, jobs: Jobs, tables: Tables) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule="@every 1s", overlap_policy="replace"))
    first = (await wait_until(runs(bus, job_id, 1), what="the first run"))[0]
    await bus.execution_event("execution.started", first)

    async def cancelled() -> list[Any] | None:
        found = [c for c in bus.cancels if c.execution_id == first.execution_id]
        return found or None

    cancel = (await wait_until(cancelled, what="execution.cancel of the running run"))[0]
    assert "replaced by the run of" in cancel.reason

    async def replacing() -> list[RunRequested] | None:
        return [r for r in bus.runs_of(job_id) if r.execution_id != first.execution_id] or None

    await wait_until(replacing, what="the replacing run, requested with the cancel")
    await bus.execution_event("execution.cancelled", first)

    async def finished() -> bool:
        return all(r.finished_at is not None for r in await tables.running(job_id))

    await wait_until(finished, what="the cancelled run no longer running")
    assert sample("automation_scheduler_cancels_total") >= 1


async def test_retention_cleanup_deletes_records_older_than_the_retention(
    app: FastAPI, bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    job_id, anchor = await create(bus, jobs, tables, "@every 1h", misfire_policy="skip")
    await tables.travel(job_id, next_fire_at=anchor + HOUR)
    await wait_until(recorded(tables, job_id, 5), what="five records")
    scheduler: Scheduler = app.state.scheduler
    async with scheduler.engine.begin() as conn:
        old = fires.c.job_id == job_id, fires.c.nominal_time < anchor + 3 * HOUR
        await conn.execute(fires.update().where(*old).values(recorded_at=func.now() - timedelta(hours=200)))
    deleted = await cleanup(scheduler.engine, timedelta(hours=168))
    assert deleted["fires"] >= 2
    assert [r.nominal_time for r in await tables.fires(job_id)] == [anchor + k * HOUR for k in (3, 4, 5)]
