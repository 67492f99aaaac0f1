"""browser.task over RabbitMQ request/reply with real Chromium; bad messages are dead-lettered."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractIncomingMessage

from automation_browser_pool.app import create_app
from automation_browser_pool.settings import BrowserPoolSettings
from automation_contracts import (
    BROWSER_REPLY_SLACK_SECONDS,
    BrowserResult,
    CloudEvent,
    build_event,
    parse_data,
    validate_event,
)
from automation_core.settings import ServiceSettings
from automation_messaging import REASON_HEADER, Broker, RpcClient
from automation_messaging.topology import BROWSER_TASK, BROWSER_TASKS, COMMANDS, DEAD_QUEUE
from automation_testing import wait_until

pytestmark = pytest.mark.integration

ADMIN = "t" * 32
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAGE = b"<!doctype html><title>Over RabbitMQ</title><p id='p'>served by the test</p>"


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Harness:
    http: httpx.AsyncClient
    broker: Broker
    rpc: RpcClient

    async def call(self, data: dict[str, Any], timeout: float = 15, sent_at: datetime | None = None) -> BrowserResult:
        request = build_event(BROWSER_TASK, source="/tests/browser-pool", data=data, time=sent_at)
        reply = await self.rpc.call(request, routing_key=BROWSER_TASK, timeout=timeout)
        assert reply.type == "browser.result"
        assert reply.source == "/automation/browser-pool"
        validate_event(reply)
        return parse_data(reply, BrowserResult)

    async def dead_letters(self, expected: int) -> list[AbstractIncomingMessage]:
        found: list[AbstractIncomingMessage] = []

        async def probe() -> bool:
            channel = await self.broker.channel()
            try:
                queue = await channel.get_queue(DEAD_QUEUE, ensure=False)
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    found.append(message)
            finally:
                await channel.close()
            return len(found) >= expected

        await wait_until(probe, timeout=10, what=f"{expected} dead letters")
        return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(database_url: str, amqp_url: str) -> AsyncIterator[Harness]:
    settings = BrowserPoolSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret="x" * 32,
        admin_token=ADMIN,
        browser_pool_size=1,
        browser_contexts_per_browser=2,
    )
    app = create_app(settings)
    client_settings = ServiceSettings(
        service_name="browser-pool-test-client",
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
    )
    broker = Broker(client_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as http,
    ):
        await broker.connect()
        rpc = RpcClient(broker)
        await rpc.start()
        try:
            yield Harness(http, broker, rpc)
        finally:
            await rpc.stop()
            await broker.close()


def task(*actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"task_id": str(uuid.uuid4()), "actions": list(actions), **fields}


async def test_screenshot_over_request_reply(harness: Harness, site: str) -> None:
    data = task({"type": "goto", "url": f"{site}/"}, {"type": "screenshot"}, execution_id=str(uuid.uuid4()))
    result = await harness.call(data)
    assert result.ok, result.error
    assert str(result.task_id) == data["task_id"]
    assert result.title == "Over RabbitMQ"
    [artifact] = result.artifacts
    response = await harness.http.get(f"/api/v1/artifacts/{artifact.id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    meta = (await harness.http.get(f"/api/v1/artifacts/{artifact.id}/meta")).json()
    assert meta["execution_id"] == data["execution_id"]

    stored = (await harness.http.get(f"/api/v1/tasks/{data['task_id']}")).json()
    assert BrowserResult.model_validate(stored) == result, "HTTP and RabbitMQ answer the same result"


async def test_the_same_task_over_http_and_rabbitmq_gives_the_same_answer(harness: Harness, site: str) -> None:
    actions = [{"type": "goto", "url": f"{site}/"}, {"type": "extract", "selector": "#p", "name": "text"}]
    over_http = (await harness.http.post("/api/v1/tasks", json=task(*actions))).json()
    over_amqp = await harness.call(task(*actions))
    assert over_amqp.ok
    assert over_http["ok"] is True
    assert (over_amqp.title, over_amqp.url, over_amqp.outputs) == (
        over_http["title"],
        over_http["url"],
        over_http["outputs"],
    )
    assert over_amqp.outputs == {"text": "served by the test"}


async def test_concurrent_tasks_share_the_pool(harness: Harness, site: str) -> None:
    results = await asyncio.gather(
        *(harness.call(task({"type": "goto", "url": f"{site}/?n={n}"}, timeout_seconds=20)) for n in range(5))
    )
    assert all(r.ok for r in results)
    assert sorted(r.url or "" for r in results) == sorted(f"{site}/?n={n}" for n in range(5))


async def test_a_page_failure_is_a_reply_not_a_dead_letter(harness: Harness) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await harness.call(task({"type": "goto", "url": f"http://127.0.0.1:{port}/"}))
    assert not result.ok
    assert result.error is not None
    assert "ERR_CONNECTION_REFUSED" in result.error
    refused = await harness.call(task({"type": "goto", "url": "file:///etc/passwd"}))
    assert not refused.ok
    assert refused.error == "action 0 (goto): URL scheme file: is not allowed (only http, https and about:blank)"


async def test_bad_messages_are_dead_lettered_and_the_next_task_is_answered(harness: Harness, site: str) -> None:
    publisher = harness.broker.publisher
    await publisher.publish_raw(b"{this is not json", exchange=COMMANDS, routing_key=BROWSER_TASK)
    invalid = build_event(
        BROWSER_TASK, source="/tests/browser-pool", data={"task_id": str(uuid.uuid4()), "actions": []}
    )
    await publisher.publish(invalid, exchange=COMMANDS, routing_key=BROWSER_TASK)
    wrong_type = build_event("inventory.synced", source="/tests/browser-pool", data={"items": 3})
    await publisher.publish(wrong_type, exchange=COMMANDS, routing_key=BROWSER_TASK)

    result = await harness.call(task({"type": "goto", "url": f"{site}/"}))
    assert result.ok

    dead = await harness.dead_letters(3)
    assert all(m.headers["x-original-queue"] == BROWSER_TASKS for m in dead)
    by_body = {m.body: str(m.headers[REASON_HEADER]) for m in dead}
    assert by_body[b"{this is not json"].startswith("invalid message:")
    assert by_body[invalid.to_json_bytes()].startswith("invalid message: data.actions")
    assert by_body[wrong_type.to_json_bytes()] == (
        f"unexpected event type 'inventory.synced' on {BROWSER_TASKS} (expected 'browser.task')"
    )
    assert json.loads(invalid.to_json_bytes())["type"] == BROWSER_TASK


async def test_a_task_without_reply_to_is_still_run_and_recorded(harness: Harness, site: str) -> None:
    data = task({"type": "goto", "url": f"{site}/"})
    event: CloudEvent = build_event(BROWSER_TASK, source="/tests/browser-pool", data=data)
    await harness.broker.publisher.publish(event, exchange=COMMANDS, routing_key=BROWSER_TASK)

    async def recorded() -> dict[str, Any] | None:
        response = await harness.http.get(f"/api/v1/tasks/{data['task_id']}")
        return response.json() if response.status_code == 200 else None

    stored = await wait_until(recorded, timeout=10, what="the task record")
    assert stored["ok"] is True
    assert stored["title"] == "Over RabbitMQ"


async def test_a_task_its_caller_stopped_waiting_for_is_not_run(harness: Harness, site: str) -> None:
    """A request that waited in the queue past its timeout and the caller's slack (browser-pool was down):
    answered ``ok: false`` without opening the page, and the same again when delivered again."""
    data = task({"type": "goto", "url": f"{site}/stale"}, timeout_seconds=5)
    sent = datetime.now(UTC) - timedelta(seconds=5 + BROWSER_REPLY_SLACK_SECONDS + 1)
    result = await harness.call(data, sent_at=sent)
    assert result.ok is False
    assert result.error is not None
    assert result.error.startswith("not run: the task was sent 2")
    assert result.url is None
    again = await harness.call(data)
    assert again == result, "a task answered before gets its stored result"
    fresh = await harness.call(
        task({"type": "goto", "url": f"{site}/fresh"}, timeout_seconds=5), sent_at=datetime.now(UTC)
    )
    assert fresh.ok is True
