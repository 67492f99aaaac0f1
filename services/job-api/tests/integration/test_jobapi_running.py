"""Executions while they run: followed logs (server-sent events) and cancellation.

Followed logs: execution.log batches streamed until the execution ends. The poll interval here is
far longer than any test, so what arrives was woken by the NOTIFY the consumer's transaction sends.
Cancellation: execution.cancel broadcast on automation.control, the read model, 409 once finished.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractQueue
from fastapi import FastAPI
from jobapi_support import (
    ADMIN,
    AccountCreds,
    EventStream,
    Frame,
    create_job,
    make_settings,
    new_account,
    next_message,
    publish_event,
    stream_get,
)

from automation_contracts import CloudEvent, build_event, validate_event
from automation_job_api.app import create_app
from automation_job_api.domain.notifications import NOTIFY_CHANNEL
from automation_job_api.service import log_follow
from automation_job_api.service.log_follow import ExecutionWatch
from automation_job_api.settings import JobApiSettings
from automation_testing import wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PARAMETERS = {"type": "object", "properties": {"site": {"type": "string"}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def settings(database_url: str, amqp_url: str) -> JobApiSettings:
    return make_settings(database_url, amqp_url).model_copy(
        update={
            "log_follow_poll_seconds": 60.0,
            "log_follow_heartbeat_seconds": 60.0,
            "log_follow_end_grace_seconds": 1.0,
        }
    )


class Run:
    """The execution events of one manual run, as an executor publishes them."""

    def __init__(self, execution_id: str, job_id: str, account_id: str) -> None:
        self.ids = {"execution_id": execution_id, "job_id": job_id, "account_id": account_id}

    def event(self, event_type: str, **data: Any) -> CloudEvent:
        return build_event(event_type, source="/automation/executor", data={**self.ids, **data})

    def log(self, seq: int, *texts: str, attempt: int = 1) -> CloudEvent:
        ts = (T0 + timedelta(seconds=seq)).isoformat()
        entries = [{"ts": ts, "stream": "stdout", "step": "build", "text": text} for text in texts]
        return self.event("execution.log", attempt=attempt, seq=seq, entries=entries, truncated=False)

    def started(self) -> CloudEvent:
        return self.event("execution.started", attempt=1, started_at=T0.isoformat(), worker="w1")

    def succeeded(self) -> CloudEvent:
        end = (T0 + timedelta(seconds=9)).isoformat()
        return self.event("execution.succeeded", attempt=1, started_at=T0.isoformat(), finished_at=end, exit_code=0)


async def _run(client: httpx.AsyncClient, account: AccountCreds) -> Run:
    job = await create_job(client, account, parameters=PARAMETERS)
    resp = await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)
    assert resp.status_code == 202, resp.text
    return Run(resp.json()["execution_id"], job["id"], account.id)


def _url(run: Run) -> str:
    return f"/api/v1/executions/{run.ids['execution_id']}/logs?follow=true"


async def _expect(stream: EventStream, event: str) -> Frame:
    frame = await stream.next_frame()
    assert frame is not None, f"the stream ended before an {event} event"
    assert frame.event == event, frame
    return frame


def _texts(frame: Frame) -> list[str]:
    return [entry["text"] for entry in json.loads(frame.data)["entries"]]


async def _open_streams(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("automation_log_follow_streams "))
    return float(line.split()[1])


async def test_a_followed_log_streams_existing_then_new_lines_and_ends_with_the_run(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    run = await _run(client, account)
    async with stream_get(app, _url(run), account.headers) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert json.loads((await _expect(stream, "status")).data)["status"] == "queued"

        await publish_event(amqp, run.started())
        await publish_event(amqp, run.log(0, "compiling", "; rm -rf / #"))
        frames = [await stream.next_frame(), await stream.next_frame()]
        logs = [f for f in frames if f is not None and f.event == "log"]
        assert [(f.id, _texts(f)) for f in logs] == [("1:0", ["compiling", "; rm -rf / #"])]
        statuses = [json.loads(f.data) for f in frames if f is not None and f.event == "status"]
        assert [(s["status"], s["attempt"]) for s in statuses] == [("running", 1)]

        await publish_event(amqp, run.log(1, "linking"))
        second = await _expect(stream, "log")
        assert (second.id, _texts(second)) == ("1:1", ["linking"])
        assert json.loads(second.data)["attempt"] == 1

        await publish_event(amqp, run.succeeded())
        await publish_event(amqp, run.log(2, "late line"))  # may be recorded after the terminal event
        rest: list[Frame] = []
        while (frame := await stream.next_frame()) is not None:
            rest.append(frame)
        assert [f.event for f in rest if f.event != "log"] == ["status", "end"]
        assert [(f.id, _texts(f)) for f in rest if f.event == "log"] == [("1:2", ["late line"])]
        final = json.loads(next(f for f in rest if f.event == "status").data)
        execution = (await client.get(f"/api/v1/executions/{run.ids['execution_id']}", headers=account.headers)).json()
        # the times as the execution itself writes them (UTC as Z)
        assert (final["started_at"], final["finished_at"]) == (execution["started_at"], execution["finished_at"])
        assert final["started_at"].endswith("Z")
        assert json.loads(rest[-1].data) == {"status": "succeeded"}
        assert rest[-1].event == "end"
    assert await _open_streams(client) == 0

    resumed_after = {**account.headers, "Last-Event-ID": "1:0"}
    async with stream_get(app, _url(run), resumed_after) as resumed:
        got = []
        while (frame := await resumed.next_frame()) is not None:
            got.append(frame)
    assert [(f.event, f.id) for f in got] == [("log", "1:1"), ("log", "1:2"), ("status", None), ("end", None)]

    plain = await client.get(f"/api/v1/executions/{run.ids['execution_id']}/logs", headers=account.headers)
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.text.splitlines()[1:] == [
        "2026-11-23T12:00:00Z stdout [build] compiling",
        "2026-11-23T12:00:00Z stdout [build] ; rm -rf / #",
        "2026-11-23T12:00:01Z stdout [build] linking",
        "2026-11-23T12:00:02Z stdout [build] late line",
    ]


async def test_a_client_that_goes_away_closes_its_stream(
    app: FastAPI, client: httpx.AsyncClient, account: AccountCreds
) -> None:
    run = await _run(client, account)
    async with stream_get(app, _url(run), account.headers) as stream:
        await _expect(stream, "status")
        assert await _open_streams(client) == 1

    async def closed() -> bool:
        return await _open_streams(client) == 0

    await wait_until(closed, what="the stream to close after the client left")


async def test_problems_come_before_any_stream(app: FastAPI, client: httpx.AsyncClient, account: AccountCreds) -> None:
    run = await _run(client, account)
    other = await new_account(client)
    assert (await client.get(_url(run), headers=other.headers)).status_code == 404
    bad = await client.get(_url(run), headers={**account.headers, "Last-Event-ID": "yesterday"})
    assert (bad.status_code, bad.json()["field"]) == (422, "Last-Event-ID")
    assert (await client.get(_url(run))).status_code == 401


@pytest_asyncio.fixture(loop_scope="session")
async def chatty_app(settings: JobApiSettings) -> AsyncIterator[FastAPI]:
    """A second replica whose followed logs send a heartbeat every 0.2 s."""
    application = create_app(settings.model_copy(update={"log_follow_heartbeat_seconds": 0.2}))
    async with application.router.lifespan_context(application):
        yield application


async def test_idle_streams_send_heartbeat_comments(
    chatty_app: FastAPI, client: httpx.AsyncClient, account: AccountCreds
) -> None:
    run = await _run(client, account)
    async with stream_get(chatty_app, _url(run), account.headers) as stream:
        await _expect(stream, "status")
        for _ in range(2):
            frame = await stream.next_frame(timeout=2)
            assert frame is not None
            assert (frame.comment, frame.event, frame.data) == ("keepalive", None, "")


async def test_a_followed_log_goes_on_through_a_database_outage(
    app: FastAPI,
    client: httpx.AsyncClient,
    account: AccountCreds,
    amqp: AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the database cannot be reached the stream says so in a comment and reads again; it does
    not end, and the lines recorded meanwhile come once it is back."""
    monkeypatch.setattr(log_follow, "OUTAGE_FIRST_PAUSE_SECONDS", 0.05)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    real_read = log_follow.LogFollower._read
    refusals = [0]

    async def read(follower: Any, execution_id: Any, after: Any) -> Any:
        if refusals[0]:
            refusals[0] -= 1
            await asyncio.open_connection("127.0.0.1", closed)  # refused, as while PostgreSQL restarts
        return await real_read(follower, execution_id, after)

    monkeypatch.setattr(log_follow.LogFollower, "_read", read)
    run = await _run(client, account)
    async with stream_get(app, _url(run), account.headers) as stream:
        await _expect(stream, "status")
        refusals[0] = 3
        await publish_event(amqp, run.started())
        await publish_event(amqp, run.log(0, "written during the outage"))
        frames: list[Frame] = []
        while not any(f.event == "log" for f in frames):
            frame = await stream.next_frame()
            assert frame is not None, f"the stream ended during the outage after {frames}"
            frames.append(frame)
        comments = [f.comment for f in frames if f.comment]
        assert comments[:1] == ["the database cannot be reached; the log goes on when it answers"], frames
        assert _texts(frames[-1]) == ["written during the outage"]
        await publish_event(amqp, run.succeeded())
        rest = []
        while (frame := await stream.next_frame()) is not None:
            rest.append(frame.event)
        assert rest[-1] == "end"
    assert refusals == [0]


# Cancellation


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def control(amqp: AbstractChannel) -> AsyncIterator[AbstractQueue]:
    """A queue of its own on the automation.control fanout, as each executor replica has."""
    queue = await amqp.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind("automation.control", routing_key="")
    yield queue
    await queue.delete(if_unused=False, if_empty=False)


async def _queued_run(client: httpx.AsyncClient, account: AccountCreds) -> tuple[str, str]:
    job = await create_job(client, account, parameters=PARAMETERS)
    resp = await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)
    assert resp.status_code == 202, resp.text
    return job["id"], resp.json()["execution_id"]


def _execution_event(event_type: str, ids: dict[str, str], **data: Any) -> CloudEvent:
    return build_event(event_type, source="/automation/executor", data={**ids, **data}, subject=ids["execution_id"])


async def _status(client: httpx.AsyncClient, account: AccountCreds, execution_id: str, status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)).json()
        return body if body["status"] == status else None

    return await wait_until(probe, what=f"execution {status}")


async def _cancel_command(control: AbstractQueue, execution_id: str) -> CloudEvent:
    while True:
        message = await next_message(control, what=f"execution.cancel for {execution_id}")
        event = CloudEvent.from_json_bytes(message.body)
        if event.data["execution_id"] == execution_id:
            assert message.exchange == "automation.control"
            assert message.routing_key == "execution.cancel"
            return event


async def test_cancelling_a_queued_run_broadcasts_execution_cancel_and_records_the_request(
    client: httpx.AsyncClient, account: AccountCreds, control: AbstractQueue
) -> None:
    _, execution_id = await _queued_run(client, account)
    resp = await client.post(
        f"/api/v1/executions/{execution_id}/cancel", json={"reason": "operator said so"}, headers=account.headers
    )
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert (accepted["execution_id"], accepted["status"]) == (execution_id, "queued")

    event = await _cancel_command(control, execution_id)
    validate_event(event)
    assert (event.type, event.source, event.subject) == ("execution.cancel", "/automation/job-api", execution_id)
    assert event.data["reason"] == "operator said so"

    execution = (await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)).json()
    assert (execution["status"], execution["cancel_reason"]) == ("queued", "operator said so")
    assert execution["cancel_requested_at"] == accepted["cancel_requested_at"]

    again = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=account.headers)
    assert again.status_code == 202, again.text
    assert again.json()["cancel_requested_at"] == accepted["cancel_requested_at"]
    repeated = await _cancel_command(control, execution_id)
    assert repeated.id != event.id
    assert repeated.data["reason"] == "cancelled on request"


async def test_a_running_run_is_cancelled_and_a_finished_one_is_a_409(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel, control: AbstractQueue
) -> None:
    job_id, execution_id = await _queued_run(client, account)
    ids = {"execution_id": execution_id, "job_id": job_id, "account_id": account.id}
    started = _execution_event("execution.started", ids, attempt=1, started_at="2026-11-23T12:00:00Z", worker="w1")
    await publish_event(amqp, started)
    await _status(client, account, execution_id, "running")

    resp = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=account.headers)
    assert (resp.status_code, resp.json()["status"]) == (202, "running")
    await _cancel_command(control, execution_id)

    cancelled = _execution_event(
        "execution.cancelled", ids, attempt=1, finished_at="2026-11-23T12:00:02Z", reason="cancelled on request"
    )
    await publish_event(amqp, cancelled)
    final = await _status(client, account, execution_id, "cancelled")
    assert final["error"] == "cancelled on request"
    assert final["cancel_requested_at"] is not None

    refused = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=account.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["field"] == "status"
    assert "already cancelled" in refused.json()["detail"]


async def test_succeeded_runs_cannot_be_cancelled(
    client: httpx.AsyncClient, account: AccountCreds, amqp: AbstractChannel
) -> None:
    job_id, execution_id = await _queued_run(client, account)
    ids = {"execution_id": execution_id, "job_id": job_id, "account_id": account.id}
    done = _execution_event(
        "execution.succeeded", ids, attempt=1, started_at="2026-11-23T12:00:00Z", finished_at="2026-11-23T12:00:01Z"
    )
    await publish_event(amqp, done)
    await _status(client, account, execution_id, "succeeded")
    resp = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=account.headers)
    assert resp.status_code == 409
    assert (await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)).json()[
        "cancel_requested_at"
    ] is None


async def test_only_the_owning_account_cancels(client: httpx.AsyncClient, account: AccountCreds) -> None:
    _, execution_id = await _queued_run(client, account)
    other = await new_account(client)
    assert (await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=other.headers)).status_code == 404
    assert (await client.post(f"/api/v1/executions/{uuid.uuid4()}/cancel", headers=account.headers)).status_code == 404
    assert (await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=ADMIN)).status_code == 403
    assert (await client.post(f"/api/v1/executions/{execution_id}/cancel")).status_code == 401
    bad = await client.post(f"/api/v1/executions/{execution_id}/cancel", json={"reason": ""}, headers=account.headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "reason")


async def test_the_watch_listens_only_while_a_stream_follows(database_url: str) -> None:
    name = f"watch-{uuid.uuid4().hex[:8]}"
    watch = ExecutionWatch(database_url, application_name=name, idle_close_seconds=0.3)
    sender = await asyncpg.connect(database_url)

    async def backends() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        return int(await sender.fetchval(query, name))

    async def followed_and_woken() -> None:
        execution_id = uuid.uuid4()
        with watch.subscribe(execution_id) as woken:
            await asyncio.wait_for(watch.listening.wait(), 10)
            assert await backends() == 1
            woken.clear()
            await sender.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(execution_id))
            await asyncio.wait_for(woken.wait(), 10)

    async def gone() -> bool:
        return not watch.listening.is_set() and await backends() == 0

    async def dropped_and_back() -> None:
        execution_id = uuid.uuid4()
        with watch.subscribe(execution_id) as woken:
            await asyncio.wait_for(watch.listening.wait(), 10)
            query = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
            dropped = await sender.fetchval(query, name)
            woken.clear()
            await sender.execute("SELECT pg_terminate_backend($1)", dropped)

            async def listening_again() -> bool:
                return watch.listening.is_set() and await sender.fetchval(query, name) not in (None, dropped)

            await wait_until(listening_again, what="the watch to listen again on a new connection")
            assert woken.is_set(), "woken on reconnecting: notifications may have been missed meanwhile"
            woken.clear()
            await sender.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(execution_id))
            await asyncio.wait_for(woken.wait(), 10)

    await watch.start()
    try:
        await asyncio.sleep(0.5)
        assert await backends() == 0, "nobody follows: no connection, so no notification costs it anything"
        await followed_and_woken()
        await wait_until(gone, what="the watch to stop listening once nobody followed for its idle time")
        await followed_and_woken()  # and it listens again for the next stream
        await dropped_and_back()  # a connection the database drops under a stream is made again
    finally:
        await watch.stop()
        await sender.close()
