"""Dead letters: automation.dead into the table, and the admin API to list, inspect, requeue, delete and purge."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractQueue
from jobapi_support import ADMIN, AccountCreds, next_message, publish, stored_dead_letter

from automation_testing import wait_until

pytestmark = pytest.mark.integration
EVENTS_QUEUE = "job-api.execution-events"


@pytest_asyncio.fixture(loop_scope="session")
async def routing_key() -> str:
    """A routing key job-api consumes (execution.*) that no other test uses."""
    return f"execution.probe-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(loop_scope="session")
async def watcher(amqp: AbstractChannel, routing_key: str) -> AsyncIterator[AbstractQueue]:
    """An exclusive queue that also receives what is published on automation.events with ``routing_key``."""
    queue = await amqp.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind("automation.events", routing_key=routing_key)
    yield queue
    await queue.delete(if_unused=False, if_empty=False)


async def _letters(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/dead-letters", params={"limit": 200, **params}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def _metric(client: httpx.AsyncClient, prefix: str) -> float:
    text = (await client.get("/metrics")).text
    return next((float(x[len(prefix) :]) for x in text.splitlines() if x.startswith(prefix)), 0.0)


async def _dead_queue_is_empty(amqp: AbstractChannel) -> None:
    async def empty() -> bool:
        queue = await amqp.declare_queue("automation.dead", passive=True)
        return queue.declaration_result.message_count == 0

    await wait_until(empty, what="automation.dead drained into the table")


async def test_a_bad_message_is_stored_with_its_reason_and_requeued_onto_its_routing_key(
    client: httpx.AsyncClient, amqp: AbstractChannel, routing_key: str, watcher: AbstractQueue
) -> None:
    counted = f'automation_dead_letters_total{{original_queue="{EVENTS_QUEUE}"}} '
    before = await _metric(client, counted)
    message_id = f"bad-{uuid.uuid4().hex[:8]}"
    await publish(
        amqp, "automation.events", routing_key, b"{not json", message_id=message_id, headers={"x-custom": "kept"}
    )
    original = await next_message(watcher, what="the watcher's copy")
    assert original.body == b"{not json"

    letter = await stored_dead_letter(client, message_id)
    assert letter["original_queue"] == EVENTS_QUEUE
    assert (letter["original_exchange"], letter["original_routing_key"]) == ("automation.events", routing_key)
    assert letter["reason"].startswith("invalid message")
    assert letter["dead_lettered_by"] == "job-api"
    assert (letter["body_text"], base64.b64decode(letter["body_base64"]), letter["body_size"]) == (
        "{not json",
        b"{not json",
        9,
    )
    assert letter["headers"]["x-dead-letter-reason"] == letter["reason"]
    assert (letter["requeued_at"], letter["requeue_count"]) == (None, 0)
    assert await _metric(client, counted) == before + 1
    await _dead_queue_is_empty(amqp)

    resp = await client.post(f"/api/v1/dead-letters/{letter['id']}/requeue", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["requeue_count"] == 1
    assert resp.json()["requeued_at"] is not None
    again = await next_message(watcher, what="the requeued message on its original routing key")
    assert (again.body, again.message_id, again.routing_key) == (b"{not json", message_id, routing_key)
    headers = again.headers or {}
    assert headers.get("x-custom") == "kept"
    assert not [name for name in headers if name.startswith(("x-dead-letter", "x-original-"))]

    async def dead_lettered_twice() -> bool:
        return len(await _letters(client, routing_key=routing_key)) == 2

    await wait_until(dead_lettered_twice, what="job-api to dead-letter the requeued message again")


async def test_anything_on_automation_dead_is_kept_even_when_it_is_no_cloudevent(
    client: httpx.AsyncClient, amqp: AbstractChannel
) -> None:
    body = b"\x00\x01\xfe binary payload"
    died_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    death = {
        "count": 5,
        "reason": "delivery_limit",
        "queue": "executor.runs",
        "time": died_at,
        "exchange": "automation.commands",
        "routing-keys": ["run.requested"],
    }
    message_id = f"poison-{uuid.uuid4().hex[:8]}"
    await publish(amqp, "automation.dlx", "run.requested", body, message_id=message_id, headers={"x-death": [death]})
    letter = await stored_dead_letter(client, message_id)
    assert (letter["original_queue"], letter["original_exchange"], letter["reason"]) == (
        "executor.runs",
        "automation.commands",
        "delivery_limit",
    )
    assert letter["dead_lettered_by"] == "rabbitmq"
    assert letter["dead_lettered_at"] == died_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    assert letter["body_text"] is None
    assert base64.b64decode(letter["body_base64"]) == body
    await _dead_queue_is_empty(amqp)


async def test_a_redelivered_dead_letter_is_stored_once(client: httpx.AsyncClient, amqp: AbstractChannel) -> None:
    headers = {
        "x-dead-letter-reason": "handler said no",
        "x-original-exchange": "automation.events",
        "x-original-routing-key": "thing.happened",
        "x-original-queue": "scheduler.job-events",
        "x-dead-lettered-at": "2026-11-23T12:00:00+00:00",
        "x-dead-lettered-by": "scheduler",
    }
    message_id = f"twice-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await publish(amqp, "automation.dlx", "thing.happened", b"{}", message_id=message_id, headers=headers)
    await stored_dead_letter(client, message_id)
    await _dead_queue_is_empty(amqp)
    assert (
        len([x for x in await _letters(client, original_queue="scheduler.job-events") if x["message_id"] == message_id])
        == 1
    )


async def _letter_with(amqp: AbstractChannel, client: httpx.AsyncClient, **headers: Any) -> dict[str, Any]:
    message_id = f"m-{uuid.uuid4().hex[:8]}"
    stamped = {"x-dead-lettered-at": datetime.now(UTC).isoformat(), "x-dead-letter-reason": "test", **headers}
    await publish(amqp, "automation.dlx", "some.key", b"{}", message_id=message_id, headers=stamped)
    return await stored_dead_letter(client, message_id)


async def test_a_letter_that_cannot_go_back_is_a_409(client: httpx.AsyncClient, amqp: AbstractChannel) -> None:
    nowhere = await _letter_with(
        amqp, client, **{"x-original-exchange": "automation.events", "x-original-routing-key": "nobody.listens"}
    )
    resp = await client.post(f"/api/v1/dead-letters/{nowhere['id']}/requeue", headers=ADMIN)
    assert (resp.status_code, resp.headers["content-type"]) == (409, "application/problem+json")
    assert "no queue takes" in resp.json()["detail"]

    missing = await _letter_with(
        amqp, client, **{"x-original-exchange": "no.such.exchange", "x-original-routing-key": "k"}
    )
    resp = await client.post(f"/api/v1/dead-letters/{missing['id']}/requeue", headers=ADMIN)
    assert resp.status_code == 409
    assert "does not exist" in resp.json()["detail"]
    again = await client.post(f"/api/v1/dead-letters/{nowhere['id']}/requeue", headers=ADMIN)
    assert "no queue takes" in again.json()["detail"]  # the channel the missing exchange closed was reopened

    anonymous = await _letter_with(amqp, client, **{"x-original-routing-key": ""})
    resp = await client.post(f"/api/v1/dead-letters/{anonymous['id']}/requeue", headers=ADMIN)
    assert resp.status_code == 409
    assert (await client.get(f"/api/v1/dead-letters/{anonymous['id']}", headers=ADMIN)).json()["requeued_at"] is None


async def test_delete_purge_filters_and_pages(client: httpx.AsyncClient, amqp: AbstractChannel) -> None:
    queue = f"purge-test-{uuid.uuid4().hex[:6]}"
    made = [await _letter_with(amqp, client, **{"x-original-queue": queue}) for _ in range(4)]
    newest_first = [x["id"] for x in reversed(made)]

    first = (
        await client.get("/api/v1/dead-letters", params={"original_queue": queue, "limit": 3}, headers=ADMIN)
    ).json()
    second = (
        await client.get(
            "/api/v1/dead-letters", params={"original_queue": queue, "cursor": first["next_cursor"]}, headers=ADMIN
        )
    ).json()
    assert [x["id"] for x in first["items"] + second["items"]] == newest_first
    assert second["next_cursor"] is None
    since = made[2]["dead_lettered_at"]
    assert [x["id"] for x in await _letters(client, original_queue=queue, since=since)] == newest_first[:2]

    assert (await client.delete(f"/api/v1/dead-letters/{made[0]['id']}", headers=ADMIN)).status_code == 204
    assert (await client.get(f"/api/v1/dead-letters/{made[0]['id']}", headers=ADMIN)).status_code == 404
    assert (await client.delete(f"/api/v1/dead-letters/{made[0]['id']}", headers=ADMIN)).status_code == 404

    stored = f'automation_dead_letters_stored{{original_queue="{queue}"}} '

    async def gauge_is(value: float) -> bool:
        return await _metric(client, stored) == value

    await wait_until(lambda: gauge_is(3), what="the stored gauge to count 3")
    cutoff = (datetime.fromisoformat(made[2]["dead_lettered_at"]) - timedelta(microseconds=1)).isoformat()
    purged = await client.post(
        "/api/v1/dead-letters/purge", json={"original_queue": queue, "before": cutoff}, headers=ADMIN
    )
    assert purged.json() == {"purged": 1}
    purged = await client.post("/api/v1/dead-letters/purge", json={"original_queue": queue}, headers=ADMIN)
    assert purged.json() == {"purged": 2}
    assert await _letters(client, original_queue=queue) == []
    await wait_until(lambda: gauge_is(0), what="the stored gauge to drop to 0")
    bad = await client.post("/api/v1/dead-letters/purge", json={"before": "yesterday"}, headers=ADMIN)
    assert (bad.status_code, bad.json()["field"]) == (422, "before")


async def test_dead_letters_are_for_the_admin_only(client: httpx.AsyncClient, account: AccountCreds) -> None:
    letter_id = uuid.uuid4()
    calls = [
        ("GET", "/api/v1/dead-letters"),
        ("GET", f"/api/v1/dead-letters/{letter_id}"),
        ("POST", f"/api/v1/dead-letters/{letter_id}/requeue"),
        ("DELETE", f"/api/v1/dead-letters/{letter_id}"),
        ("POST", "/api/v1/dead-letters/purge"),
    ]
    for method, path in calls:
        assert (await client.request(method, path, headers=account.headers)).status_code == 403, path
        assert (await client.request(method, path)).status_code == 401, path
    assert (await client.get(f"/api/v1/dead-letters/{letter_id}", headers=ADMIN)).status_code == 404


async def test_the_dead_queue_is_declared_as_the_topology_declares_it(amqp: AbstractChannel) -> None:
    queue = await amqp.declare_queue("automation.dead", durable=True, arguments={"x-queue-type": "quorum"})
    consumers = queue.declaration_result.consumer_count
    assert consumers is not None
    assert consumers >= 1
