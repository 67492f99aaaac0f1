"""POST /api/v1/events in every mode against real PostgreSQL and RabbitMQ: stored, listed, published."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from automation_contracts import ExecutionStarted
from automation_core.auth import issue_token
from automation_db import schema_drift
from automation_event_gateway.db.tables import metadata
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging.topology import EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "t" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


@pytest.fixture(scope="module")
def settings(database_url: str, amqp_url: str) -> EventGatewaySettings:
    return EventGatewaySettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret="x" * 32,
        admin_token=ADMIN_TOKEN,
        events_max_body_bytes=65_536,
        events_max_batch=10,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def published(client: httpx.AsyncClient, amqp_url: str) -> AsyncIterator[AbstractQueue]:
    """A queue bound to every routing key of automation.events (the app declared the exchange)."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EVENTS, routing_key="#")
        yield queue


def source() -> str:
    return f"/tests/{uuid.uuid4().hex}"


def ce(src: str, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": src,
        "type": "inventory.synced",
        "time": "2026-11-23T12:00:00Z",
        "data": {"site": "fra1", "items": 1200},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def account_token(settings: EventGatewaySettings) -> dict[str, str]:
    token, _ = issue_token(settings, account_id=uuid.uuid4())
    return {"Authorization": f"Bearer {token}"}


async def next_message(queue: AbstractQueue, event_source: str) -> AbstractIncomingMessage:
    """The next published message whose CloudEvent has ``event_source`` (others are skipped)."""

    async def probe() -> AbstractIncomingMessage | None:
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                return None
            if json.loads(message.body).get("source") == event_source:
                return message

    return await wait_until(probe, timeout=5, what=f"a message from {event_source}")


async def history(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/events", params=params, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_migrations_match_the_models(client: httpx.AsyncClient, database_url: str) -> None:
    assert await schema_drift(database_url, metadata) == []


async def test_structured_event_is_stored_listed_and_published(
    client: httpx.AsyncClient, published: AbstractQueue
) -> None:
    src = source()
    event = ce(src, subject="fra1", region="eu")
    resp = await client.post(
        "/api/v1/events",
        content=json.dumps(event),
        headers={**ADMIN, "Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "accepted"
    assert body["id"] == event["id"]
    assert body["source"] == src

    message = await next_message(published, src)
    assert message.routing_key == "inventory.synced"
    assert message.content_type == "application/cloudevents+json"
    sent = json.loads(message.body)
    assert sent == {**event, "time": "2026-11-23T12:00:00Z"}

    [kept] = await history(client, source=src)
    assert kept["event_uuid"] == body["event_uuid"]
    assert kept["type"] == "inventory.synced"
    assert kept["subject"] == "fra1"
    assert kept["data"] == {"site": "fra1", "items": 1200}
    assert kept["extensions"] == {"region": "eu"}
    assert kept["origin"] == "http"
    assert datetime.fromisoformat(kept["time"]) == datetime(2026, 11, 23, 12, tzinfo=UTC)
    one = await client.get(f"/api/v1/events/{body['event_uuid']}", headers=ADMIN)
    assert one.status_code == 200
    assert one.json() == kept


async def test_binary_event_with_json_data(client: httpx.AsyncClient, published: AbstractQueue) -> None:
    src = source()
    event_id = str(uuid.uuid4())
    resp = await client.post(
        "/api/v1/events",
        content=b'{"site": "fra1"}',
        headers={
            **ADMIN,
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": src,
            "ce-type": "inventory.synced",
            "ce-time": "2026-11-23T12:00:00+01:00",
            "ce-subject": "site%20fra1",
            "ce-tenant": "acme",
        },
    )
    assert resp.status_code == 202, resp.text
    message = await next_message(published, src)
    assert message.routing_key == "inventory.synced"
    sent = json.loads(message.body)
    assert sent == {
        "specversion": "1.0",
        "id": event_id,
        "source": src,
        "type": "inventory.synced",
        "time": "2026-11-23T12:00:00+01:00",
        "subject": "site fra1",
        "datacontenttype": "application/json",
        "data": {"site": "fra1"},
        "tenant": "acme",
    }
    [kept] = await history(client, source=src)
    assert kept["datacontenttype"] == "application/json"
    assert kept["data"] == {"site": "fra1"}
    assert kept["extensions"] == {"tenant": "acme"}


async def test_binary_event_with_text_and_bytes(client: httpx.AsyncClient, published: AbstractQueue) -> None:
    src = source()
    headers = {**ADMIN, "ce-specversion": "1.0", "ce-source": src, "ce-type": "files.uploaded"}
    text = await client.post(
        "/api/v1/events", content=b"hello", headers={**headers, "ce-id": "1", "Content-Type": "text/plain"}
    )
    blob = await client.post(
        "/api/v1/events",
        content=b"\x89PNG\x00\x01",
        headers={**headers, "ce-id": "2", "Content-Type": "image/png"},
    )
    assert (text.status_code, blob.status_code) == (202, 202)
    kept = {item["id"]: item for item in await history(client, source=src)}
    assert kept["1"]["data"] == "hello"
    assert kept["1"]["data_base64"] is None
    assert kept["2"]["data"] is None
    assert kept["2"]["data_base64"] == "iVBORwAB"
    assert kept["2"]["datacontenttype"] == "image/png"
    first = json.loads((await next_message(published, src)).body)
    second = json.loads((await next_message(published, src)).body)
    assert {first["id"]: first, second["id"]: second}["2"]["data_base64"] == "iVBORwAB"


async def test_batch_answers_per_event(client: httpx.AsyncClient, published: AbstractQueue) -> None:
    src = source()
    first, second = ce(src, type="orders.placed"), ce(src, type="orders.shipped")
    resp = await client.post("/api/v1/events", content=json.dumps([first, second]), headers={**ADMIN, **BATCH})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert [(i["id"], i["status"]) for i in body["items"]] == [(first["id"], "accepted"), (second["id"], "accepted")]
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    keys = {(await next_message(published, src)).routing_key for _ in range(2)}
    assert keys == {"orders.placed", "orders.shipped"}

    again = await client.post("/api/v1/events", content=json.dumps([first, ce(src)]), headers={**ADMIN, **BATCH})
    assert again.status_code == 202
    assert [i["status"] for i in again.json()["items"]] == ["duplicate", "accepted"]

    twice = ce(src, id="zzz-same")
    inner = await client.post(
        "/api/v1/events", content=json.dumps([ce(src, id="zzz-other"), twice, twice]), headers={**ADMIN, **BATCH}
    )
    results = inner.json()["items"]
    assert [i["status"] for i in results] == ["accepted", "accepted", "duplicate"]
    assert results[1]["event_uuid"] == results[2]["event_uuid"]
    all_duplicates = await client.post("/api/v1/events", content=json.dumps([twice]), headers={**ADMIN, **BATCH})
    assert all_duplicates.status_code == 200
    assert (all_duplicates.json()["accepted"], all_duplicates.json()["duplicates"]) == (0, 1)


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    src = source()
    batch = [ce(src), ce(src, type=...), ce(src, time="yesterday")]
    resp = await client.post("/api/v1/events", content=json.dumps(batch), headers={**ADMIN, **BATCH})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["field"] == "1.type"
    assert [e["field"] for e in problem["errors"]] == ["1.type", "2.time"]
    assert await history(client, source=src) == []


async def test_duplicate_is_not_republished(client: httpx.AsyncClient, published: AbstractQueue) -> None:
    src = source()
    event = ce(src)
    first = await client.post("/api/v1/events", content=json.dumps(event), headers={**ADMIN, **STRUCTURED})
    again = await client.post("/api/v1/events", content=json.dumps(event), headers={**ADMIN, **STRUCTURED})
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_uuid"] == first.json()["event_uuid"]
    marker = ce(src, type="tests.marker")
    assert (await client.post("/api/v1/events", content=json.dumps(marker), headers={**ADMIN, **STRUCTURED})).is_success
    # The relay publishes in outbox order: a republished duplicate would arrive before the marker.
    assert (await next_message(published, src)).routing_key == "inventory.synced"
    assert (await next_message(published, src)).routing_key == "tests.marker"
    assert len(await history(client, source=src)) == 2


@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [
        (STRUCTURED, {"specversion": "1.0", "id": "1", "source": "/s"}, 422, "type"),
        (STRUCTURED, {"specversion": "0.3", "id": "1", "source": "/s", "type": "a.b"}, 422, "specversion"),
        (STRUCTURED, {"specversion": "1.0", "id": "", "source": "/s", "type": "a.b"}, 422, "id"),
        (STRUCTURED, {"specversion": "1.0", "id": "1", "source": "a b", "type": "a.b"}, 422, "source"),
        (STRUCTURED, {"specversion": "1.0", "id": "1", "source": "/s", "type": "a.*"}, 422, "type"),
        (STRUCTURED, {"specversion": "1.0", "id": "1", "source": "/s", "type": "a.b", "time": "noon"}, 422, "time"),
        (STRUCTURED, {"specversion": "1.0", "id": "1", "source": "/s", "type": "a.b", "Ext": 1}, 422, "Ext"),
        (
            {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "1", "ce-type": "a.b"},
            {},
            422,
            "ce-source",
        ),
        ({"Content-Type": "application/json"}, {"specversion": "1.0"}, 422, "ce-specversion"),
        (
            {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"},
            {},
            422,
            "ce-type",
        ),
        ({"Content-Type": "application/cloudevents+json; charset=latin-1"}, {}, 415, "content-type"),
    ],
)
async def test_invalid_events_name_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], status: int, field: str
) -> None:
    resp = await client.post("/api/v1/events", content=json.dumps(body), headers={**ADMIN, **headers})
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["field"] == field


async def test_unreadable_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    broken = await client.post("/api/v1/events", content=b"{nope", headers={**ADMIN, **STRUCTURED})
    assert broken.status_code == 422
    big = json.dumps(ce(source(), data={"blob": "x" * 70_000}))
    too_large = await client.post("/api/v1/events", content=big, headers={**ADMIN, **STRUCTURED})
    assert too_large.status_code == 413
    many = json.dumps([ce(source()) for _ in range(11)])
    too_many = await client.post("/api/v1/events", content=many, headers={**ADMIN, **BATCH})
    assert too_many.status_code == 413


async def test_platform_types_are_for_the_admin_only(
    client: httpx.AsyncClient, settings: EventGatewaySettings, published: AbstractQueue
) -> None:
    src = source()
    data = ExecutionStarted(
        execution_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        attempt=1,
        started_at=datetime.now(UTC),
        worker="w1",
    ).model_dump(mode="json")
    event = ce(src, type="execution.started", data=data)
    account = account_token(settings)
    for platform_type in ("execution.started", "job.created", "run.requested", "browser.task"):
        resp = await client.post(
            "/api/v1/events", content=json.dumps({**event, "type": platform_type}), headers={**account, **STRUCTURED}
        )
        assert resp.status_code == 403, platform_type
        assert resp.json()["field"] == "type"
    in_batch = await client.post("/api/v1/events", content=json.dumps([ce(src), event]), headers={**account, **BATCH})
    assert (in_batch.status_code, in_batch.json()["field"]) == (403, "1.type")

    invalid = await client.post(
        "/api/v1/events", content=json.dumps({**event, "data": {**data, "attempt": 0}}), headers={**ADMIN, **STRUCTURED}
    )
    assert (invalid.status_code, invalid.json()["field"]) == (422, "data.attempt")
    resp = await client.post("/api/v1/events", content=json.dumps(event), headers={**ADMIN, **STRUCTURED})
    assert resp.status_code == 202, resp.text
    assert (await next_message(published, src)).routing_key == "execution.started"


async def test_credentials(client: httpx.AsyncClient, settings: EventGatewaySettings) -> None:
    event = json.dumps(ce(source()))
    wrong_key, _ = issue_token(
        EventGatewaySettings(jwt_secret="y" * 32, admin_token=ADMIN_TOKEN), account_id=uuid.uuid4()
    )
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {wrong_key}"},
        {"Authorization": "Basic abc"},
    ):
        post = await client.post("/api/v1/events", content=event, headers={**headers, **STRUCTURED})
        assert post.status_code == 401, headers
        assert (await client.get("/api/v1/events", headers=headers)).status_code == 401
        assert (await client.get(f"/api/v1/events/{uuid.uuid4()}", headers=headers)).status_code == 401
    resp = await client.post("/api/v1/events", content=event, headers={**account_token(settings), **STRUCTURED})
    assert resp.status_code == 202
    assert (await client.get("/api/v1/events", headers=account_token(settings))).status_code == 200


async def test_history_filters_and_pages(client: httpx.AsyncClient) -> None:
    src = source()
    types = ["a.b", "a.b.c", "a", "x.a.b", "a.x.b"]
    batch = [ce(src, type=t, id=t, subject="even" if i % 2 == 0 else "odd") for i, t in enumerate(types)]
    resp = await client.post("/api/v1/events", content=json.dumps(batch), headers={**ADMIN, **BATCH})
    assert resp.status_code == 202

    async def listed(**params: str) -> set[str]:
        return {item["type"] for item in await history(client, source=src, **params)}

    assert await listed(type="a.b") == {"a.b"}
    assert await listed(type="a.*") == {"a.b"}
    assert await listed(type="a.#") == {"a.b", "a.b.c", "a", "a.x.b"}
    assert await listed(type="#.b") == {"a.b", "x.a.b", "a.x.b"}
    assert await listed(type="*") == {"a"}
    assert await listed(type="#") == set(types)
    assert await listed(subject="even") == {"a.b", "a", "a.x.b"}
    everything = await history(client, source=src)
    received = sorted(datetime.fromisoformat(item["received_at"]) for item in everything)
    assert [datetime.fromisoformat(i["received_at"]) for i in everything] == received[::-1]
    assert await listed(since=received[0].isoformat()) == set(types)
    assert await listed(until=received[0].isoformat()) == set()
    assert await listed(since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z") == set()

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"source": src, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/events", params=params, headers=ADMIN)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything]
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "a..b"}, "type"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-23T12:00:00"}, "until"),
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
async def test_bad_history_queries(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    resp = await client.get("/api/v1/events", params=params, headers=ADMIN)
    assert resp.status_code == 422
    assert resp.json()["field"] == field


async def test_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/v1/events/{uuid.uuid4()}", headers=ADMIN)).status_code == 404
    assert (await client.get("/api/v1/events/not-a-uuid", headers=ADMIN)).status_code == 422


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


async def test_metrics_count_by_capped_type(client: httpx.AsyncClient, settings: EventGatewaySettings) -> None:
    stored = 'automation_events_stored_total{origin="http"}'
    other = 'automation_events_ingested_total{source_kind="http",type="other"}'
    forbidden = 'automation_events_rejected_total{reason="forbidden_type"}'
    before = (await client.get("/metrics")).text
    event = ce(source(), type=f"user.controlled.{uuid.uuid4().hex}")
    assert (await client.post("/api/v1/events", content=json.dumps(event), headers={**ADMIN, **STRUCTURED})).is_success
    platform = ce(source(), type="job.created", data={})
    refused = await client.post(
        "/api/v1/events", content=json.dumps(platform), headers={**account_token(settings), **STRUCTURED}
    )
    assert refused.status_code == 403
    after = (await client.get("/metrics")).text
    assert sample(after, stored) == sample(before, stored) + 1
    assert sample(after, other) == sample(before, other) + 1
    assert sample(after, forbidden) == sample(before, forbidden) + 1
    assert event["type"] not in after
