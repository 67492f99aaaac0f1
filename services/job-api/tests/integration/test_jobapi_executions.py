"""Execution events into the read model: retries, duplicates, out-of-order delivery, logs, dead letters."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from jobapi_support import AccountCreds, create_job, new_account, publish, publish_event, stored_dead_letter

from automation_contracts import EVENT_MODELS, CloudEvent, build_event, parse_data
from automation_job_api.consumers import facts_of
from automation_job_api.service.executions import ExecutionService, ForeignExecution
from automation_testing import wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NO_REQUIRED_PARAMETERS = {"type": "object", "properties": {"site": {"type": "string"}}}


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def _z(seconds: float) -> str:
    """``_at`` as the API writes it."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class Run:
    """Builds the execution events of one run as an executor would publish them."""

    def __init__(self, execution_id: str, job_id: str, account_id: str) -> None:
        self.ids = {"execution_id": execution_id, "job_id": job_id, "account_id": account_id}

    def _event(self, event_type: str, **data: Any) -> CloudEvent:
        return build_event(
            event_type, source="/automation/executor", data={**self.ids, **data}, subject=self.ids["execution_id"]
        )

    def started(self, attempt: int, at: float, **extra: object) -> CloudEvent:
        return self._event("execution.started", attempt=attempt, started_at=_at(at), worker="executor-1", **extra)

    def log(self, attempt: int, seq: int, *lines: tuple[str, str | None, str]) -> CloudEvent:
        entries = [
            {"ts": _at(seq + i / 10), "stream": s, "step": step, "text": t} for i, (s, step, t) in enumerate(lines)
        ]
        return self._event("execution.log", attempt=attempt, seq=seq, entries=entries, truncated=False)

    def failed(self, attempt: int, at: float, *, will_retry: bool) -> CloudEvent:
        return self._event(
            "execution.failed",
            attempt=attempt,
            started_at=_at(at - 1),
            finished_at=_at(at),
            exit_code=2,
            error="step build exited 2",
            will_retry=will_retry,
            next_attempt_at=_at(at + 1) if will_retry else None,
        )

    def succeeded(self, attempt: int, at: float) -> CloudEvent:
        return self._event(
            "execution.succeeded",
            attempt=attempt,
            started_at=_at(at - 1),
            finished_at=_at(at),
            exit_code=0,
            result={"steps": {"build": {"exit_code": 0}}},
        )


async def _execution(client: httpx.AsyncClient, creds: AccountCreds, execution_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/executions/{execution_id}", headers=creds.headers)
    assert resp.status_code in {200, 404}, resp.text
    return resp.json() if resp.status_code == 200 else {}


async def _wait_for(
    client: httpx.AsyncClient, creds: AccountCreds, execution_id: str, what: str, **expected: Any
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        execution = await _execution(client, creds, execution_id)
        return execution if all(execution.get(k) == v for k, v in expected.items()) else None

    return await wait_until(probe, timeout=10, what=what)


async def _logs(client: httpx.AsyncClient, creds: AccountCreds, execution_id: str) -> str:
    resp = await client.get(f"/api/v1/executions/{execution_id}/logs", headers=creds.headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


async def _record(executions: ExecutionService, event: CloudEvent) -> bool:
    data: Any = parse_data(event, EVENT_MODELS[event.type])
    return await executions.record(
        event.type,
        data,
        execution_id=data.execution_id,
        account_id=data.account_id,
        job_id=data.job_id,
        trigger=None,
        facts=facts_of(data),
    )


async def test_a_manual_run_that_retries_then_succeeds(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    job = await create_job(client, account, parameters=NO_REQUIRED_PARAMETERS)
    execution_id = (await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)).json()[
        "execution_id"
    ]
    run = Run(execution_id, job["id"], account.id)

    await publish_event(amqp, run.started(1, 1))
    running = await _wait_for(client, account, execution_id, "attempt 1 running", status="running")
    assert (running["attempt"], running["started_at"]) == (1, "2026-11-23T12:00:01Z")
    await publish_event(amqp, run.log(1, 0, ("stdout", "build", "compiling"), ("stderr", "build", "error: nope")))
    await publish_event(amqp, run.failed(1, 3, will_retry=True))
    retrying = await _wait_for(client, account, execution_id, "queued for retry", status="queued", exit_code=2)
    assert (retrying["attempt"], retrying["error"]) == (1, "step build exited 2")
    await publish_event(amqp, run.started(2, 5))
    await _wait_for(client, account, execution_id, "attempt 2 running", status="running", attempt=2)
    await publish_event(amqp, run.log(2, 0, ("system", None, "attempt 2"), ("stdout", "build", "done")))
    await publish_event(amqp, run.succeeded(2, 7))
    final = await _wait_for(client, account, execution_id, "succeeded", status="succeeded")
    assert final["attempt"] == 2
    assert (final["started_at"], final["finished_at"]) == ("2026-11-23T12:00:06Z", "2026-11-23T12:00:07Z")
    assert (final["exit_code"], final["error"], final["trigger"]) == (0, None, "manual")
    assert final["result"] == {"steps": {"build": {"exit_code": 0}}}

    async def full_log() -> str | None:
        text = await _logs(client, account, execution_id)
        return text if text.count("\n") == 6 else None

    assert await wait_until(full_log, what="both attempts' logs") == (
        "--- attempt 1 ---\n"
        "2026-11-23T12:00:00Z stdout [build] compiling\n"
        "2026-11-23T12:00:00.100000Z stderr [build] error: nope\n"
        "--- attempt 2 ---\n"
        "2026-11-23T12:00:00Z system [-] attempt 2\n"
        "2026-11-23T12:00:00.100000Z stdout [build] done\n"
    )


async def test_a_scheduled_run_seen_out_of_order_and_duplicated(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    job_id = str(uuid.uuid4())  # the scheduler's runs need no row of ours beforehand
    execution_id = str(uuid.uuid4())
    run = Run(execution_id, job_id, account.id)
    finished = run.succeeded(1, 9)
    await publish_event(amqp, finished)
    first = await _wait_for(client, account, execution_id, "row created by a terminal event", status="succeeded")
    assert (first["trigger"], first["attempt"], first["job_id"]) == ("schedule", 1, job_id)
    assert first["queued_at"] is None

    late_log = run.log(1, 1, ("stdout", "main", "second batch"))
    early_log = run.log(1, 0, ("stdout", "main", "first batch"))
    started = run.started(1, 2, trigger="schedule", scheduled_for=_at(0))
    for event in [late_log, started, early_log, early_log, finished, started]:
        await publish_event(amqp, event)

    async def both_batches() -> str | None:
        text = await _logs(client, account, execution_id)
        return text if "second batch" in text and "first batch" in text else None

    text = await wait_until(both_batches, what="both log batches")
    assert text == (
        "--- attempt 1 ---\n"
        "2026-11-23T12:00:00Z stdout [main] first batch\n"
        "2026-11-23T12:00:01Z stdout [main] second batch\n"
    )
    after = await _execution(client, account, execution_id)
    assert after["status"] == "succeeded"  # the late start and logs did not reopen it
    assert after["started_at"] == "2026-11-23T12:00:08Z"
    assert after["finished_at"] == "2026-11-23T12:00:09Z"
    assert after["scheduled_for"] == "2026-11-23T12:00:00Z"

    listed = await client.get(
        "/api/v1/executions", params={"status": "succeeded", "trigger": "schedule"}, headers=account.headers
    )
    assert execution_id in {e["id"] for e in listed.json()["items"]}
    by_job = (await client.get("/api/v1/executions", params={"job_id": job_id}, headers=account.headers)).json()
    assert [e["id"] for e in by_job["items"]] == [execution_id]
    manual_only = await client.get("/api/v1/executions", params={"trigger": "manual"}, headers=account.headers)
    assert execution_id not in {e["id"] for e in manual_only.json()["items"]}
    bad = await client.get("/api/v1/executions", params={"status": "exploded"}, headers=account.headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "status")


async def test_the_start_names_the_trigger_of_a_run_first_seen_through_its_logs(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    execution_id = str(uuid.uuid4())
    run = Run(execution_id, str(uuid.uuid4()), account.id)
    await publish_event(amqp, run.log(1, 0, ("stdout", "s", "early")))
    await _wait_for(client, account, execution_id, "row created by a log batch", status="running")
    await publish_event(amqp, run.started(1, 1, trigger="event"))

    async def named() -> bool:
        return bool((await _execution(client, account, execution_id))["trigger"] == "event")

    await wait_until(named, what="the trigger named by execution.started")


async def test_the_start_tells_what_a_run_was_asked_to_be_and_a_manual_run_keeps_its_own(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    facts = {"job_version": 4, "parameters": {"site": "fra1", "n": 2}, "requested_at": _at(-1)}
    event_run = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id)
    await publish_event(amqp, event_run.started(1, 1, trigger="event", **facts))
    seen = await _wait_for(client, account, event_run.ids["execution_id"], "an event run", status="running")
    assert (seen["job_version"], seen["parameters"], seen["queued_at"]) == (4, {"site": "fra1", "n": 2}, _z(-1))

    late = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id)  # its start comes after its end
    await publish_event(amqp, late.succeeded(1, 9))
    await _wait_for(client, account, late.ids["execution_id"], "a run created by its end", status="succeeded")
    await publish_event(amqp, late.started(1, 8, trigger="schedule", scheduled_for=_at(0), **facts))
    filled = await _wait_for(client, account, late.ids["execution_id"], "the start's facts", job_version=4)
    assert (filled["status"], filled["parameters"], filled["queued_at"]) == ("succeeded", facts["parameters"], _z(-1))

    job = await create_job(client, account, parameters=NO_REQUIRED_PARAMETERS)
    execute = await client.post(
        f"/api/v1/jobs/{job['id']}/execute", json={"parameters": {"site": "ams1"}}, headers=account.headers
    )
    manual = Run(execute.json()["execution_id"], job["id"], account.id)
    queued = await _execution(client, account, manual.ids["execution_id"])
    await publish_event(amqp, manual.started(1, 1, **facts))  # what it says differs: the row keeps its own
    running = await _wait_for(client, account, manual.ids["execution_id"], "the manual run started", status="running")
    assert (running["job_version"], running["parameters"]) == (1, {"site": "ams1"})
    assert running["queued_at"] == queued["queued_at"]


async def test_a_lower_attempt_arriving_late_changes_nothing(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    execution_id = str(uuid.uuid4())
    run = Run(execution_id, str(uuid.uuid4()), account.id)
    await publish_event(amqp, run.started(2, 10))
    await _wait_for(client, account, execution_id, "attempt 2 running", status="running", attempt=2)
    await publish_event(amqp, run.failed(1, 5, will_retry=False))
    await publish_event(amqp, run.log(2, 0, ("stdout", "s", "marker")))

    async def logged() -> bool:
        return "marker" in await _logs(client, account, execution_id)

    await wait_until(logged, what="the attempt 2 log")
    after = await _execution(client, account, execution_id)
    assert (after["status"], after["attempt"], after["error"]) == ("running", 2, None)


async def test_executions_of_another_account_are_404(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    execution_id = str(uuid.uuid4())
    await publish_event(amqp, Run(execution_id, str(uuid.uuid4()), account.id).started(1, 0))
    await _wait_for(client, account, execution_id, "recorded", status="running")
    stranger = await new_account(client)
    for suffix in ("", "/logs"):
        resp = await client.get(f"/api/v1/executions/{execution_id}{suffix}", headers=stranger.headers)
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/problem+json"
    theirs = (await client.get("/api/v1/executions", headers=stranger.headers)).json()
    assert theirs == {"items": [], "next_cursor": None}


async def test_executions_list_newest_first_in_pages(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    job = await create_job(client, account, parameters=NO_REQUIRED_PARAMETERS)
    made = [
        (await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)).json()["execution_id"]
        for _ in range(3)
    ]
    first = (
        await client.get("/api/v1/executions", params={"job_id": job["id"], "limit": 2}, headers=account.headers)
    ).json()
    second = (
        await client.get(
            "/api/v1/executions",
            params={"job_id": job["id"], "limit": 2, "cursor": first["next_cursor"]},
            headers=account.headers,
        )
    ).json()
    assert [e["id"] for e in first["items"] + second["items"]] == list(reversed(made))
    assert second["next_cursor"] is None


async def _dead_letter(client: httpx.AsyncClient, message_id: str) -> tuple[str, bytes]:
    letter = await stored_dead_letter(client, message_id)
    assert letter["original_queue"] == "job-api.execution-events"
    assert letter["dead_lettered_by"] == "job-api"
    return letter["reason"], base64.b64decode(letter["body_base64"])


async def test_malformed_and_schema_invalid_messages_are_dead_lettered_and_consumption_goes_on(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    await publish(amqp, "automation.events", "execution.started", b"{this is not json", message_id="malformed-1")
    reason, body = await _dead_letter(client, "malformed-1")
    assert body == b"{this is not json"
    assert reason.startswith("invalid message")

    execution_id = str(uuid.uuid4())
    run = Run(execution_id, str(uuid.uuid4()), account.id)
    invalid = build_event(
        "execution.started",
        source="/automation/executor",
        data={**run.ids, "attempt": 0, "started_at": _at(0), "worker": "w"},
    )
    await publish_event(amqp, invalid)
    reason, _ = await _dead_letter(client, invalid.id)
    assert "data.attempt" in reason

    unknown = build_event("execution.exploded", source="/automation/executor", data={"execution_id": execution_id})
    await publish_event(amqp, unknown)
    reason, _ = await _dead_letter(client, unknown.id)
    assert "execution.exploded" in reason

    await publish_event(amqp, run.started(1, 0))
    await _wait_for(client, account, execution_id, "the valid event after the bad ones", status="running")

    hijack = Run(execution_id, str(uuid.uuid4()), account.id).succeeded(1, 3)
    await publish_event(amqp, hijack)
    reason, _ = await _dead_letter(client, hijack.id)
    assert "another job or account" in reason
    assert (await _execution(client, account, execution_id))["status"] == "running"


async def test_what_postgresql_cannot_keep_is_recorded_made_storable(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds
) -> None:
    # A command that prints a NUL byte put one in a log batch: the batch, and with it the outcome that
    # shared its transaction, failed until both were dead-lettered, and the run stayed "running".
    executions: ExecutionService = app.state.job_api.executions
    run = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id)
    log = run.log(1, 0, ("stdout", "s", "a\x00b"))
    started = run.started(1, 1, parameters={"n": float("nan"), "k\x00": "v"})
    ended = run._event(
        "execution.failed",
        attempt=1,
        finished_at=_at(2),
        error="died: \x00",
        will_retry=False,
        result={"s": {"stdout_tail": "a\x00b", "x": float("inf")}},
    )
    assert await asyncio.gather(*(_record(executions, e) for e in (started, log, ended))) == [True, False, True]
    execution = await _execution(client, account, run.ids["execution_id"])
    assert execution["parameters"] == {"n": None, "k\ufffd": "v"}
    assert execution["error"] == "died: \ufffd"
    assert execution["result"] == {"s": {"stdout_tail": "a\ufffdb", "x": None}}
    assert "a\ufffdb" in await _logs(client, account, run.ids["execution_id"])


async def test_an_event_the_database_refuses_fails_alone_and_its_batch_mates_are_recorded(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds
) -> None:
    executions: ExecutionService = app.state.job_api.executions
    good, bad = (Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id) for _ in range(2))
    too_big = bad._event(  # an exit code no integer column takes: the database refuses the batch
        "execution.failed", attempt=1, finished_at=_at(2), exit_code=2**40, error="x", will_retry=False
    )
    answers = await asyncio.gather(
        _record(executions, good.succeeded(1, 2)), _record(executions, too_big), return_exceptions=True
    )
    assert answers[0] is True
    assert isinstance(answers[1], asyncpg.DataError), answers[1]
    assert (await _execution(client, account, good.ids["execution_id"]))["status"] == "succeeded"
    assert await _execution(client, account, bad.ids["execution_id"]) == {}


async def test_recorded_statuses_are_counted(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    recorded = 'automation_executions_recorded_total{status="succeeded"} '
    acked = 'automation_messages_consumed_total{outcome="acked",queue="job-api.execution-events",service="job-api"} '

    async def count(prefix: str) -> float:
        text = (await client.get("/metrics")).text
        return next((float(x[len(prefix) :]) for x in text.splitlines() if x.startswith(prefix)), 0.0)

    recorded_before, acked_before = await count(recorded), await count(acked)
    event = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id).succeeded(1, 1)
    await publish_event(amqp, event)
    await publish_event(amqp, event)

    async def both_handled() -> bool:
        return await count(acked) == acked_before + 2

    await wait_until(both_handled, what="both copies handled")
    assert await count(recorded) == recorded_before + 1
    for pool in ("main", "recording"):  # the engine, and the pool the batch was recorded through
        assert await count(f'automation_db_pool_max_connections{{pool="{pool}",service="job-api"}} ') > 0, pool


async def test_events_recorded_together_apply_as_if_one_transaction_each(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds
) -> None:
    executions: ExecutionService = app.state.job_api.executions
    job_id = str(uuid.uuid4())
    runs = [Run(str(uuid.uuid4()), job_id, account.id) for _ in range(20)]
    events: list[CloudEvent] = []
    for run in runs:  # outcome first, then a log and the late start: all in flight at once
        events += [run.succeeded(1, 9), run.log(1, 0, ("stdout", "main", "only line")), run.started(1, 2)]
    intruder = Run(runs[0].ids["execution_id"], str(uuid.uuid4()), account.id).started(1, 3)
    events.append(intruder)

    results = await asyncio.gather(*(_record(executions, e) for e in events), return_exceptions=True)
    assert results[:-1] == [True, False, False] * len(runs)
    assert isinstance(results[-1], ForeignExecution), "an event of another job fails alone, and nothing of it is kept"
    for run in runs:
        execution = await _execution(client, account, run.ids["execution_id"])
        assert (execution["status"], execution["attempt"], execution["job_id"]) == ("succeeded", 1, job_id)
        assert execution["started_at"] == "2026-11-23T12:00:08Z"
        assert (await _logs(client, account, run.ids["execution_id"])).endswith("stdout [main] only line\n")


async def test_a_row_another_replica_creates_meanwhile_is_locked_and_the_batch_applied_on_top(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds, database_url: str
) -> None:
    executions: ExecutionService = app.state.job_api.executions
    run = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id)
    other = await asyncpg.connect(database_url)
    try:
        # "Another replica" has inserted the row (its start) and not committed yet: the batch sees no row,
        # its insert waits on that one, and finds it there once it commits.
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO job_api.executions (id, account_id, job_id, status, attempt, phase, trigger, created_at,"
            " updated_at, started_at) VALUES ($1, $2, $3, 'running', 1, 1, 'manual', now(), now(), $4)",
            uuid.UUID(run.ids["execution_id"]),
            uuid.UUID(account.id),
            uuid.UUID(run.ids["job_id"]),
            T0,
        )
        recording = asyncio.create_task(_record(executions, run.succeeded(1, 9)))
        await asyncio.sleep(0.3)
        assert not recording.done(), "the batch waits for the other replica's row"
        await transaction.commit()
        assert await asyncio.wait_for(recording, 10) is True
    finally:
        await other.close()
    execution = await _execution(client, account, run.ids["execution_id"])
    assert (execution["status"], execution["trigger"]) == ("succeeded", "manual"), "applied on top of that row"
    assert execution["result"] == {"steps": {"build": {"exit_code": 0}}}


async def test_a_batch_whose_connection_the_database_drops_is_tried_again_on_a_new_one(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds, database_url: str
) -> None:
    executions: ExecutionService = app.state.job_api.executions
    run = Run(str(uuid.uuid4()), str(uuid.uuid4()), account.id)
    assert await _record(executions, run.started(1, 1)) is True
    other = await asyncpg.connect(database_url)
    try:
        # Hold the row, so the next batch waits in its lock; then drop the batch's connection under it.
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "SELECT 1 FROM job_api.executions WHERE id = $1 FOR UPDATE", uuid.UUID(run.ids["execution_id"])
        )
        recording = asyncio.create_task(_record(executions, run.succeeded(1, 9)))

        async def dropped() -> bool:
            return bool(
                await other.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name ="
                    " 'job-api-recording' AND datname = current_database() AND wait_event_type = 'Lock'"
                )
            )

        await wait_until(dropped, timeout=10, what="the batch waiting on the row, dropped")
        await transaction.commit()
        assert await asyncio.wait_for(recording, 10) is True, "tried again on a new connection"
    finally:
        await other.close()
    assert (await _execution(client, account, run.ids["execution_id"]))["status"] == "succeeded"
