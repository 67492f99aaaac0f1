"""Backfill under its concurrency cap, event triggers (match, no match, dedupe by event id, rate limit,
platform events filtered, bindings following the jobs), the preview of a proposed edit, and dead letters
on the execution-event and trigger-event queues — against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from automation_contracts import CloudEvent, RunRequested, build_event
from automation_core.auth import issue_token
from automation_messaging import REASON_HEADER
from automation_scheduler.domain.firing import backfill_execution_id, event_execution_id
from automation_scheduler.executions import EXECUTION_EVENTS_QUEUE
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.testing import Bus, Jobs, Tables
from automation_scheduler.triggers import TRIGGER_EVENTS_QUEUE
from automation_testing import wait_until

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)
PROBLEM = "application/problem+json"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def runs(bus: Bus, job_id: uuid.UUID, count: int) -> Callable[[], Awaitable[list[RunRequested] | None]]:
    async def probe() -> list[RunRequested] | None:
        found = bus.runs_of(job_id)
        return found if len(found) >= count else None

    return probe


async def hourly_job(bus: Bus, jobs: Jobs, tables: Tables, **extra: Any) -> tuple[uuid.UUID, datetime]:
    job_id = uuid.uuid4()
    anchor = datetime.now(UTC).replace(microsecond=0) - 5 * HOUR - 30 * timedelta(minutes=1)
    await bus.publish(jobs.changed(job_id, schedule="@every 1h", changed_at=anchor, **extra))
    await wait_until(lambda: tables.schedule(job_id), what="the schedule row")
    return job_id, anchor


def external(event_type: str, event_id: str, **data: Any) -> CloudEvent:
    return build_event(event_type, source="urn:test:inventory", id=event_id, data=data)


# --- backfill -----------------------------------------------------------------------------------------


async def test_backfill_releases_its_runs_under_the_concurrency_cap(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    job_id, anchor = await hourly_job(bus, jobs, tables)
    window = {"from": anchor.isoformat(), "to": (anchor + 5 * HOUR).isoformat(), "max_concurrency": 2}
    resp = await client.post(f"/api/v1/jobs/{job_id}/backfill", headers=admin, json=window)
    assert resp.status_code == 202, resp.text
    backfill_id, slots = resp.json()["backfill_id"], [anchor + k * HOUR for k in range(5)]
    assert resp.json()["slots"] == 5

    async def progress() -> dict[str, Any]:
        got = await client.get(f"/api/v1/backfills/{backfill_id}", headers=admin)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        return body

    for finished in range(5):  # finish the runs one by one: each end releases the next pending one
        released = min(finished + 2, 5)
        got = await wait_until(runs(bus, job_id, released), what=f"{released} runs released")
        assert len(got) == released, "more runs out than max_concurrency"
        assert (await progress())["released"] == released
        await bus.execution_event("execution.failed" if finished == 1 else "execution.succeeded", got[finished])

    async def done() -> dict[str, Any] | None:
        body = await progress()
        return body if body["state"] == "done" else None

    body = await wait_until(done, what="the backfill done")
    assert {k: body[k] for k in ("total", "released", "finished", "succeeded", "failed")} == {
        "total": 5,
        "released": 5,
        "finished": 5,
        "succeeded": 4,
        "failed": 1,
    }
    assert (datetime.fromisoformat(body["from"]), body["max_concurrency"]) == (anchor, 2)
    requested = bus.runs_of(job_id)
    assert [r.scheduled_for for r in requested] == slots  # oldest first
    for run in requested:
        assert (run.trigger, str(run.backfill_id)) == ("backfill", backfill_id)
        assert run.scheduled_for is not None
        assert run.execution_id == backfill_execution_id(job_id, run.scheduled_for)
    rows = [r for r in await tables.fires(job_id) if r.trigger == "backfill"]
    assert [(r.nominal_time, r.outcome, str(r.backfill_id)) for r in rows] == [
        (s, "backfill", backfill_id) for s in slots
    ]
    again = await client.post(f"/api/v1/jobs/{job_id}/backfill", headers=admin, json=window)
    assert (again.status_code, again.json()["slots"]) == (202, 0)


async def test_backfill_refusals(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str], settings: SchedulerSettings
) -> None:
    job_id, anchor = await hourly_job(bus, jobs, tables)
    secondly = uuid.uuid4()
    await bus.publish(jobs.changed(secondly, schedule="@every 1s", changed_at=anchor))
    manual = uuid.uuid4()
    await bus.publish(jobs.changed(manual, schedule=None))
    await wait_until(lambda: tables.schedule(manual), what="the manual job")
    await wait_until(lambda: tables.schedule(secondly), what="the secondly job")
    now = datetime.now(UTC)
    cases: list[tuple[uuid.UUID, dict[str, Any], int, str | None]] = [
        (job_id, {"from": anchor.isoformat(), "to": (now + HOUR).isoformat()}, 422, "to"),
        (job_id, {"from": anchor.isoformat(), "to": anchor.isoformat()}, 422, "to"),
        (secondly, {"from": anchor.isoformat(), "to": (anchor + 3 * HOUR).isoformat()}, 422, "to"),  # 10,800 slots
        (job_id, {"from": anchor.isoformat(), "to": now.isoformat(), "max_concurrency": 51}, 422, "max_concurrency"),
        (job_id, {"from": "2026-01-01T00:00:00", "to": now.isoformat()}, 422, "from"),
        (manual, {"from": anchor.isoformat(), "to": now.isoformat()}, 409, "schedule"),
        (uuid.uuid4(), {"from": anchor.isoformat(), "to": now.isoformat()}, 404, None),
    ]
    for target, body, status, field in cases:
        resp = await client.post(f"/api/v1/jobs/{target}/backfill", headers=admin, json=body)
        assert (resp.status_code, resp.json().get("field")) == (status, field), (body, resp.text)
        assert resp.headers["content-type"] == PROBLEM
    token, _ = issue_token(settings, account_id=uuid.uuid4())
    other = {"Authorization": f"Bearer {token}"}
    window = {"from": anchor.isoformat(), "to": now.isoformat()}
    assert (await client.post(f"/api/v1/jobs/{job_id}/backfill", headers=other, json=window)).status_code == 404
    assert (await client.post(f"/api/v1/jobs/{job_id}/backfill", json=window)).status_code == 401
    assert (await client.get(f"/api/v1/backfills/{uuid.uuid4()}", headers=admin)).status_code == 404


# --- event triggers -----------------------------------------------------------------------------------


async def test_event_triggers_match_dedupe_rate_limit_and_ignore_platform_events(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    fra, catch_all = uuid.uuid4(), uuid.uuid4()
    where = [{"path": "data.site", "op": "eq", "value": "fra1"}]
    await bus.publish(
        jobs.changed(fra, schedule=None, triggers=[{"type": "inventory.*", "where": where, "max_per_minute": 2}])
    )
    await bus.publish(jobs.changed(catch_all, schedule=None, triggers=[{"type": "#"}]))

    async def bound() -> bool:
        return {"inventory.*", "#"} <= await tables.bound_patterns()

    await wait_until(bound, what="the trigger patterns bound")
    duplicates = sample("automation_scheduler_event_triggers_total", outcome="duplicate")
    filtered = sample("automation_scheduler_event_triggers_total", outcome="filtered")

    first = external("inventory.synced", "inv-1", site="fra1", items=3)
    await bus.publish(first)
    await bus.publish(first)  # a republished event fires nothing twice
    await bus.publish(external("inventory.synced", "inv-2", site="ams2"))  # no match for fra
    await bus.publish(
        build_event(
            "execution.log",
            source="/automation/executor",
            data={
                "execution_id": str(uuid.uuid4()),
                "job_id": str(uuid.uuid4()),
                "account_id": str(uuid.uuid4()),
                "attempt": 1,
                "seq": 0,
                "entries": [{"ts": datetime.now(UTC).isoformat(), "stream": "stdout", "text": "hi"}],
                "truncated": False,
            },
        )
    )
    await wait_until(runs(bus, catch_all, 2), what="the catch-all job fired by both inventory events")

    async def both_duplicates_seen() -> bool:
        return sample("automation_scheduler_event_triggers_total", outcome="duplicate") >= duplicates + 2

    await wait_until(both_duplicates_seen, what="the republished event recognised for both jobs")
    assert sample("automation_scheduler_event_triggers_total", outcome="filtered") > filtered  # execution.log, unread
    assert sorted(r.event.id for r in bus.runs_of(catch_all) if r.event) == ["inv-1", "inv-2"]
    (run,) = bus.runs_of(fra)
    assert (run.trigger, run.scheduled_for, run.parameters) == ("event", None, {"site": "fra1"})
    assert run.execution_id == event_execution_id(fra, "inv-1")
    assert run.event is not None
    assert (run.event.id, run.event.type, run.event.data) == ("inv-1", "inventory.synced", {"site": "fra1", "items": 3})

    for event_id in ("inv-3", "inv-4"):  # the second is over max_per_minute: 2
        await bus.publish(external("inventory.synced", event_id, site="fra1"))

    async def three_decided() -> list[Any] | None:
        rows = await tables.event_fires(fra)
        return rows if len(rows) >= 3 else None

    rows = await wait_until(three_decided, what="the rate-limited event recorded")
    # inv-3 and inv-4 may be handled in either order (prefetch): whichever comes second is over the limit
    decided = {r.event_id: r.outcome for r in rows}
    assert decided["inv-1"] == "fired"
    assert sorted((decided["inv-3"], decided["inv-4"])) == ["fired", "rate_limited"]
    newest_first = [r.event_id for r in sorted(rows, key=lambda r: (r.recorded_at, r.event_id), reverse=True)]
    listed = (await client.get(f"/api/v1/schedules/{fra}/event-fires", headers=admin, params={"limit": 2})).json()
    assert [i["event_id"] for i in listed["items"]] == newest_first[:2]
    rest = await client.get(
        f"/api/v1/schedules/{fra}/event-fires", headers=admin, params={"cursor": listed["next_cursor"]}
    )
    assert [i["event_id"] for i in rest.json()["items"]] == newest_first[2:]

    await bus.publish(jobs.changed(catch_all, version=2, schedule=None, enabled=False, triggers=[{"type": "#"}]))

    async def unbound() -> bool:
        patterns = await tables.bound_patterns()
        return "#" not in patterns and "inventory.*" in patterns

    await wait_until(unbound, what="the disabled job's pattern unbound")


async def test_an_events_data_gives_the_run_its_parameters_and_an_invalid_one_is_recorded_not_sent(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    job_id = uuid.uuid4()
    schema = {
        "type": "object",
        "properties": {
            "site": {"type": "string", "enum": ["fra1", "ams2"]},
            "dry_run": {"type": "boolean", "default": True},
        },
        "required": ["site"],
        "additionalProperties": False,
    }
    await bus.publish(jobs.changed(job_id, schedule=None, parameters=schema, triggers=[{"type": "paramcheck.*"}]))

    async def bound() -> bool:
        return "paramcheck.*" in await tables.bound_patterns()

    await wait_until(bound, what="the trigger pattern bound")
    invalid = sample("automation_scheduler_event_triggers_total", outcome="invalid_parameters")
    await bus.publish(external("paramcheck.synced", "pc-1", site="nyc", items=3))
    await bus.publish(external("paramcheck.synced", "pc-2", items=3))
    await bus.publish(external("paramcheck.synced", "pc-3", site="ams2", items=3))

    async def three_decided() -> list[Any] | None:
        rows = await tables.event_fires(job_id)
        return rows if len(rows) >= 3 else None

    rows = await wait_until(three_decided, what="the three events decided")
    decided = {r.event_id: (r.outcome, r.reason, r.execution_id) for r in rows}
    assert decided["pc-1"][0] == "skipped"
    assert decided["pc-1"][1].startswith("invalid parameters: parameters.site: 'nyc' is not one of")
    assert decided["pc-2"][:2] == ("skipped", "invalid parameters: parameters.site: 'site' is a required property")
    assert decided["pc-1"][2] is None
    assert decided["pc-2"][2] is None
    assert decided["pc-3"][0] == "fired"
    await wait_until(runs(bus, job_id, 1), what="the run of the valid event")
    (run,) = bus.runs_of(job_id)
    assert run.execution_id == event_execution_id(job_id, "pc-3")
    assert run.parameters == {"site": "ams2", "dry_run": True}  # items is no parameter: it stays in run.event
    assert run.event is not None
    assert run.event.data == {"site": "ams2", "items": 3}
    assert sample("automation_scheduler_event_triggers_total", outcome="invalid_parameters") == invalid + 2


async def test_a_scheduled_job_whose_defaults_do_not_validate_is_dead_lettered_naming_parameters(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    await bus.dead_letters()
    job_id = uuid.uuid4()
    required = {"type": "object", "properties": {"site": {"type": "string"}}, "required": ["site"]}
    await bus.publish(jobs.changed(job_id, schedule="@every 1h", parameters=required))
    valid = uuid.uuid4()
    await bus.publish(jobs.changed(valid, schedule="@every 1h"))
    await wait_until(lambda: tables.schedule(valid), what="the valid job after the refused one")

    async def dead() -> list[Any] | None:
        found = await bus.dead_letters()
        return found or None

    (message,) = await wait_until(dead, what="the refused job version dead-lettered")
    assert str(message.headers[REASON_HEADER]).startswith(
        "data.job.parameters: scheduled runs take the defaults of the job's parameters, which do not validate:"
        " parameters.properties.site.default: parameter 'site' is required and has no default"
    )
    assert await tables.schedule(job_id) is None
    assert bus.runs_of(job_id) == []


# --- preview ------------------------------------------------------------------------------------------


async def test_preview_shows_how_an_edit_moves_a_jobs_next_fires(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str], settings: SchedulerSettings
) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule="0 9 * * *", timezone="Europe/Berlin"))
    await wait_until(lambda: tables.schedule(job_id), what="the job")
    base = {"job_id": str(job_id), "from": "2026-01-05T00:00:00Z", "count": 3}
    resp = await client.post("/api/v1/schedules/preview", headers=admin, json=base | {"schedule": "0 10 * * 1-5"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["current_fire_times"] == ["2026-01-05T08:00:00Z", "2026-01-06T08:00:00Z", "2026-01-07T08:00:00Z"]
    assert body["fire_times"] == ["2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z", "2026-01-07T09:00:00Z"]
    # compared up to where both lists reach (07 Jan 08:00): the 09:00 fire that day is beyond the current list
    assert (body["added"], body["removed"]) == (body["fire_times"][:2], body["current_fire_times"])
    moved = (await client.post("/api/v1/schedules/preview", headers=admin, json=base | {"timezone": "UTC"})).json()
    assert moved["fire_times"][0] == "2026-01-05T09:00:00Z"
    same = (await client.post("/api/v1/schedules/preview", headers=admin, json=base | {"dst_gap": "skip"})).json()
    assert (same["added"], same["removed"]) == ([], [])
    windowed = base | {"end_at": "2026-01-06T12:00:00Z"}
    ended = (await client.post("/api/v1/schedules/preview", headers=admin, json=windowed)).json()
    assert ended["fire_times"] == ["2026-01-05T08:00:00Z", "2026-01-06T08:00:00Z"]
    assert ended["removed"] == ["2026-01-07T08:00:00Z"]

    token, _ = issue_token(settings, account_id=uuid.uuid4())
    hidden = await client.post("/api/v1/schedules/preview", headers={"Authorization": f"Bearer {token}"}, json=base)
    assert hidden.status_code == 404
    for bad, field in (({"count": 3}, "schedule"), (base | {"schedule": "0 0 30 2 *"}, "schedule")):
        resp = await client.post("/api/v1/schedules/preview", headers=admin, json=bad)
        assert (resp.status_code, resp.json()["field"]) == (422, field)


# --- dead letters -------------------------------------------------------------------------------------


async def test_bad_messages_on_the_new_queues_are_dead_lettered_and_consumption_goes_on(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule=None, triggers=[{"type": "deadletter.*"}]))

    async def bound() -> bool:
        return "deadletter.*" in await tables.bound_patterns()

    await wait_until(bound, what="the trigger pattern bound")
    await bus.dead_letters()
    no_source = external("deadletter.test", "dl-0").model_dump(mode="json")
    del no_source["source"]
    bad_finish = build_event(
        "execution.succeeded",
        source="/automation/executor",
        data={"execution_id": str(uuid.uuid4()), "job_id": str(job_id), "account_id": str(uuid.uuid4())},
    ).model_dump(mode="json")
    await bus.publish(b"{not json", routing_key="execution.started")
    await bus.publish(json.dumps(bad_finish).encode(), routing_key="execution.succeeded")
    await bus.publish(b"{not json", routing_key="deadletter.test")
    await bus.publish(json.dumps(no_source).encode(), routing_key="deadletter.test")
    await bus.publish(external("deadletter.test", "dl-1"))
    acked_labels = {"service": "scheduler", "queue": EXECUTION_EVENTS_QUEUE, "outcome": "acked"}
    acked = sample("automation_messages_consumed_total", **acked_labels)
    valid_finish = build_event(
        "execution.cancelled",
        source="/automation/executor",
        data={
            "execution_id": str(uuid.uuid4()),
            "job_id": str(job_id),
            "account_id": str(uuid.uuid4()),
            "attempt": 1,
            "finished_at": datetime.now(UTC).isoformat(),
            "reason": "test",
        },
    )
    await bus.publish(valid_finish)
    await wait_until(runs(bus, job_id, 1), what="the valid trigger event after the bad ones")

    async def execution_events_acked() -> bool:
        return sample("automation_messages_consumed_total", **acked_labels) > acked

    collected: list[Any] = []

    async def four_dead() -> list[Any] | None:
        collected.extend(await bus.dead_letters())
        return collected if len(collected) >= 4 else None

    dead = await wait_until(four_dead, what="four dead letters")
    by_queue = sorted((str(m.headers["x-original-queue"]), str(m.headers[REASON_HEADER])) for m in dead)
    assert [queue for queue, _ in by_queue] == [EXECUTION_EVENTS_QUEUE] * 2 + [TRIGGER_EVENTS_QUEUE] * 2
    assert all(reason.startswith("invalid message") for _, reason in by_queue)
    assert any(reason.startswith("invalid message: data.") for queue, reason in by_queue[:2])
    await wait_until(execution_events_acked, what="a valid execution event handled after the bad ones")


async def test_a_job_that_cannot_be_evaluated_is_recorded_for_itself_and_holds_up_no_other_job(
    bus: Bus, jobs: Jobs, tables: Tables
) -> None:
    """One account's broken job (a parameters schema that fails to evaluate, a definition this release
    cannot read: stored by an earlier release, say) must not stop an event from firing other jobs."""
    victim, broken_schema, unreadable = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for job_id in (victim, broken_schema, unreadable):
        await bus.publish(jobs.changed(job_id, schedule=None, triggers=[{"type": "isolate.*"}]))
        await wait_until(lambda job_id=job_id: tables.schedule(job_id), what="the schedule row")

    async def bound() -> bool:
        return "isolate.*" in await tables.bound_patterns()

    await wait_until(bound, what="the trigger pattern bound")
    spec = dict((await tables.schedule(broken_schema)).spec)
    await tables.travel(broken_schema, spec=spec | {"parameters": {"$ref": "#/nowhere"}})
    await tables.travel(unreadable, spec={"steps": "not a list"})
    errors = sample("automation_scheduler_event_triggers_total", outcome="error")
    await bus.publish(external("isolate.synced", "iso-1", site="fra1"))
    await wait_until(runs(bus, victim, 1), what="the other job's run")

    for job_id in (broken_schema, unreadable):
        [row] = await wait_until(lambda job_id=job_id: tables.event_fires(job_id), what="the broken job's record")
        assert (row.outcome, row.execution_id) == ("skipped", None)
        assert row.reason.startswith("job could not be evaluated: "), row.reason
    [fired] = await tables.event_fires(victim)
    assert (fired.outcome, fired.execution_id) == ("fired", event_execution_id(victim, "iso-1"))
    assert bus.runs_of(broken_schema) == []
    assert bus.runs_of(unreadable) == []
    assert sample("automation_scheduler_event_triggers_total", outcome="error") == errors + 2

    deep: Any = []
    for _ in range(100):  # "data" is level 1 and "tree" level 2: the innermost list is level 102
        deep = [deep]
    await bus.publish(external("isolate.synced", "iso-deep", tree=deep))  # published straight to the exchange

    async def decided() -> Any:
        return next((r for r in await tables.event_fires(victim) if r.event_id == "iso-deep"), None)

    row = await wait_until(decided, what="the deep event decided")
    assert (row.outcome, row.execution_id) == ("skipped", None)
    assert row.reason == "invalid parameters: data.tree" + ".0" * 99 + ": nested deeper than 100 levels"
    assert len(bus.runs_of(victim)) == 1, "no run the executor could not read"
