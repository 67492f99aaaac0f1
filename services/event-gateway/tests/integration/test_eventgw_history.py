"""The history consumer: what others publish on automation.events is recorded; bad messages are dead-lettered."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from automation_event_gateway.app import create_app
from automation_event_gateway.consumers import HISTORY_QUEUE
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging import REASON_HEADER
from automation_messaging.topology import DEAD_QUEUE, EVENTS
from automation_testing import wait_until

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "t" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(database_url: str, amqp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = EventGatewaySettings(
        database_url=database_url, amqp_url=amqp_url, env="development", jwt_secret="x" * 32, admin_token=ADMIN_TOKEN
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def channel(client: httpx.AsyncClient, amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dead(channel: AbstractChannel) -> AbstractQueue:
    return await channel.get_queue(DEAD_QUEUE)


async def publish(channel: AbstractChannel, body: bytes, routing_key: str, app_id: str = "inventory") -> None:
    """What a foreign service does: publish straight to automation.events."""
    exchange = await channel.get_exchange(EVENTS)
    message = aio_pika.Message(
        body, content_type="application/cloudevents+json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT, app_id=app_id
    )
    await exchange.publish(message, routing_key=routing_key)


def ce(src: str, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": src,
        "type": "inventory.counted",
        "data": {"site": "fra1"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


async def metric(client: httpx.AsyncClient, sample: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def source() -> str:
    return f"/tests/{uuid.uuid4().hex}"


async def recorded(client: httpx.AsyncClient, src: str, count: int = 1) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        resp = await client.get("/api/v1/events", params={"source": src}, headers=ADMIN)
        items: list[dict[str, Any]] = resp.json()["items"]
        return items if len(items) >= count else None

    return await wait_until(probe, timeout=20, what=f"{count} event(s) from {src} in the history")


async def dead_letter(dead: AbstractQueue, marker: bytes) -> AbstractIncomingMessage:
    async def probe() -> AbstractIncomingMessage | None:
        while True:
            message = await dead.get(no_ack=True, fail=False)
            if message is None:
                return None
            if marker in message.body:
                return message

    return await wait_until(probe, timeout=20, what="the dead letter")


async def test_foreign_events_are_recorded(client: httpx.AsyncClient, channel: AbstractChannel) -> None:
    src = source()
    event = ce(src, subject="fra1", time="2026-11-23T12:00:00Z", tenant="acme")
    await publish(channel, json.dumps(event).encode(), "inventory.counted")
    [kept] = await recorded(client, src)
    assert kept["origin"] == "amqp"
    assert kept["type"] == "inventory.counted"
    assert kept["subject"] == "fra1"
    assert kept["data"] == {"site": "fra1"}
    assert kept["extensions"] == {"tenant": "acme"}


async def test_redelivered_and_republished_events_are_kept_once(
    client: httpx.AsyncClient, channel: AbstractChannel
) -> None:
    ingested = 'automation_events_ingested_total{source_kind="amqp",type="other"}'
    before = await metric(client, ingested)
    src = source()
    event = json.dumps(ce(src)).encode()
    await publish(channel, event, "inventory.counted")
    await publish(channel, event, "inventory.counted")
    marker = ce(src, type="tests.marker")
    await publish(channel, json.dumps(marker).encode(), "tests.marker")

    async def all_handled() -> bool:
        return await metric(client, ingested) == before + 3

    await wait_until(all_handled, timeout=20, what="three messages handled without error")
    items = await recorded(client, src, count=2)
    assert sorted(item["type"] for item in items) == ["inventory.counted", "tests.marker"]


async def test_posted_events_are_not_recorded_twice(client: httpx.AsyncClient, channel: AbstractChannel) -> None:
    src = source()
    probe_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await probe_queue.bind(EVENTS, routing_key="tests.posted")
    posted = ce(src, type="tests.posted")
    resp = await client.post(
        "/api/v1/events",
        content=json.dumps(posted),
        headers={**ADMIN, "Content-Type": "application/cloudevents+json"},
    )
    assert resp.status_code == 202

    async def published() -> AbstractIncomingMessage | None:
        return await probe_queue.get(no_ack=True, fail=False)

    await wait_until(published, timeout=20, what="the posted event on automation.events")
    # Published after ours, so the history queue delivers it after ours: once it is recorded, ours was seen.
    await publish(channel, json.dumps(ce(src, type="tests.marker")).encode(), "tests.marker")
    items = await recorded(client, src, count=2)
    assert sorted((item["type"], item["origin"]) for item in items) == [
        ("tests.marker", "amqp"),
        ("tests.posted", "http"),
    ]


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"this is not json {MARKER}", "invalid message"),
        (b'{"specversion": "1.0", "id": "{MARKER}", "source": "/s"}', "type"),
        (b'{"specversion": "1.0", "id": "{MARKER}", "source": "/s", "type": "job.created", "data": {}}', "data"),
        (b'{"specversion": "1.0", "id": "{MARKER}", "source": "/s", "type": "a.b", "subject": "x\\u0000y"}', "NUL"),
    ],
)
async def test_bad_messages_are_dead_lettered_and_consumption_goes_on(
    client: httpx.AsyncClient, channel: AbstractChannel, dead: AbstractQueue, body: bytes, reason_part: str
) -> None:
    marker = uuid.uuid4().hex.encode()
    await publish(channel, body.replace(b"{MARKER}", marker), "anything.at.all")
    message = await dead_letter(dead, marker)
    headers = message.headers or {}
    assert reason_part in str(headers[REASON_HEADER])
    assert headers["x-original-queue"] == HISTORY_QUEUE
    assert message.routing_key == "anything.at.all"

    src = source()
    await publish(channel, json.dumps(ce(src)).encode(), "inventory.counted")
    assert len(await recorded(client, src)) == 1


async def test_consumed_events_are_counted(client: httpx.AsyncClient, channel: AbstractChannel) -> None:
    stored = 'automation_events_stored_total{origin="amqp"}'
    before = await metric(client, stored)
    src = source()
    await publish(channel, json.dumps(ce(src)).encode(), "inventory.counted")
    await recorded(client, src)

    async def counted() -> bool:
        return await metric(client, stored) == before + 1

    await wait_until(counted, timeout=20, what="the stored counter")
