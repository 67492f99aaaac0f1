"""browser and event.emit steps over the real broker: a real browser-pool (in-process, Chromium) answers.

The executor side is what the service wires: :class:`automation_executor.bridge.BrokerServices` over the
broker's publisher and an :class:`automation_messaging.RpcClient`. The child asks the executor over its
stdin/stdout bridge; the executor publishes ``browser.task`` to ``automation.commands`` and events to
``automation.events``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from automation_browser_pool.app import create_app
from automation_browser_pool.settings import BrowserPoolSettings
from automation_contracts import CloudEvent
from automation_executor.bridge import BrokerServices
from automation_executor.settings import ExecutorSettings
from automation_messaging import Broker, RpcClient
from automation_messaging.topology import EVENTS, REPLICA_REPLIES_PREFIX
from automation_testing import drop_broker_connections, wait_until

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import forked_children, injection_values, run_job

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def _forked() -> AsyncIterator[None]:
    async with forked_children():
        yield


PAGE = (
    b"<!doctype html><title>Sign in</title><form><input id='user' name='user'>"
    b"<input id='pw' type='password'></form><p id='p'>welcome</p>"
)


SEEN: list[str] = []
"""The paths the site served, in order."""


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN.append(self.path)
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
class Platform:
    services: BrokerServices
    events: AbstractQueue


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(database_url: str, amqp_url: str) -> AsyncIterator[Platform]:
    pool_settings = BrowserPoolSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret="x" * 32,
        admin_token="t" * 32,
        browser_pool_size=1,
        browser_contexts_per_browser=2,
    )
    app = create_app(pool_settings)
    broker = Broker(ExecutorSettings(database_url=database_url, amqp_url=amqp_url, env="development"))
    async with app.router.lifespan_context(app):
        await broker.connect()
        rpc = RpcClient(broker, reply_queue=f"{REPLICA_REPLIES_PREFIX}test-{uuid.uuid4().hex[:8]}")  # as the app's
        await rpc.start()
        connection = await aio_pika.connect_robust(amqp_url)  # one test drops every connection
        channel = await connection.channel()
        # Durable, so that what is published while the connections are down waits in it.
        events = await channel.declare_queue(f"test.executor-events.{uuid.uuid4().hex[:8]}", durable=True)
        await events.bind(EVENTS, routing_key="inventory.#")
        try:
            yield Platform(BrokerServices(broker.publisher, rpc), events)
        finally:
            await events.delete(if_unused=False, if_empty=False)
            await connection.close()
            await rpc.stop()
            await broker.close()


async def _next_events(queue: AbstractQueue, count: int) -> list[CloudEvent]:
    found: list[AbstractIncomingMessage] = []

    async def probe() -> bool:
        try:
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                found.append(message)
        except aiormq.exceptions.ChannelInvalidStateError:
            return False  # still reconnecting after the test that dropped the connections
        return len(found) >= count

    await wait_until(probe, timeout=10, what=f"{count} events")
    return [CloudEvent.from_json_bytes(m.body) for m in found]


async def test_browser_step_and_handler_through_browser_pool(platform: Platform, site: str, tmp_path: Path) -> None:
    outcome, sink = await run_job(
        tmp_path,
        [
            {
                "name": "login",
                "type": "browser",
                "config": {
                    "actions": [
                        {"type": "goto", "url": "${{ parameters.site }}/login"},
                        {"type": "fill", "selector": "#user", "value": "${{ parameters.user }}"},
                        {"type": "fill", "selector": "#pw", "value": "${{ secrets.WEB_PASSWORD }}"},
                        {"type": "evaluate", "name": "user", "expression": "document.querySelector('#user').value"},
                        {"type": "evaluate", "name": "pw", "expression": "document.querySelector('#pw').value"},
                        {"type": "extract", "selector": "#p", "name": "greeting"},
                        {"type": "screenshot"},
                    ],
                    "timeout_seconds": 30,
                },
            },
            {
                "name": "title",
                "type": "python",
                "config": {"handler": "automation_executor.examples.handlers:page_title", "args": {"url": site}},
            },
        ],
        services=platform.services,
        secrets={"WEB_PASSWORD": "hunter2-web"},
        parameters={"site": site, "user": "alice"},
        timeout_seconds=60,
    )
    assert outcome.status == "succeeded", outcome
    login = outcome.outputs["login"]
    assert login["ok"] is True
    assert login["title"] == "Sign in"
    assert login["url"] == f"{site}/login"
    assert login["outputs"] == {
        "user": "alice",
        "pw": "***",
        "greeting": "welcome",
    }  # the secret was typed, then redacted
    [artifact] = login["artifacts"]
    assert artifact["kind"] == "screenshot"
    assert outcome.outputs["title"] == {"title": "Sign in", "ok": True}
    assert "hunter2-web" not in sink.text()


async def test_a_browser_step_outlives_a_dropped_broker_connection(
    platform: Platform, site: str, tmp_path: Path, amqp_url: str
) -> None:
    """RabbitMQ drops every connection while browser-pool runs the task: the step still gets its result
    (it waits in the replica's own reply queue, or comes with the task's next delivery), and the page
    was opened once."""
    path = f"/slow-{uuid.uuid4().hex[:8]}"
    step = {
        "name": "slow",
        "type": "browser",
        "config": {
            "actions": [
                {"type": "goto", "url": f"{site}{path}"},
                {"type": "evaluate", "name": "n", "expression": "() => new Promise(r => setTimeout(() => r(7), 2500))"},
            ],
            "timeout_seconds": 30,
        },
    }
    run = asyncio.create_task(run_job(tmp_path, [step], services=platform.services, timeout_seconds=60))
    await wait_until(lambda: asyncio.sleep(0, path in SEEN), timeout=30, what="the page opened by browser-pool")
    await drop_broker_connections(amqp_url)
    outcome, _ = await asyncio.wait_for(run, 60)
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["slow"]["outputs"] == {"n": 7}
    assert SEEN.count(path) == 1, "the task ran once"


async def test_event_emit_publishes_to_automation_events(platform: Platform, tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    values = list(injection_values(str(marker)).values())
    outcome, _ = await run_job(
        tmp_path,
        [
            {
                "name": f"emit{index}",
                "type": "event.emit",
                "config": {
                    "type": "inventory.synced",
                    "subject": "site-1",
                    "data": {"value": "${{ parameters.v" + str(index) + " }}"},
                },
            }
            for index in range(len(values))
        ],
        services=platform.services,
        parameters={f"v{index}": value for index, value in enumerate(values)},
    )
    assert outcome.status == "succeeded", outcome
    events = await _next_events(platform.events, len(values))
    assert sorted(e.data["value"] for e in events) == sorted(values)
    assert {e.type for e in events} == {"inventory.synced"}
    assert all(e.source.startswith("/automation/jobs/") for e in events)
    assert {outcome.outputs[f"emit{i}"]["id"] for i in range(len(values))} == {e.id for e in events}
    assert not marker.exists()


async def test_browser_injection_values_are_typed_literally(platform: Platform, site: str, tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    values = list(injection_values(str(marker)).values())
    actions: list[dict[str, Any]] = [{"type": "goto", "url": f"{site}/"}]
    for index in range(len(values)):
        actions += [
            {"type": "fill", "selector": "#user", "value": "${{ parameters.v" + str(index) + " }}"},
            {"type": "evaluate", "name": f"v{index}", "expression": "document.querySelector('#user').value"},
        ]
    outcome, _ = await run_job(
        tmp_path,
        [{"name": "fill", "type": "browser", "config": {"actions": actions}}],
        services=platform.services,
        parameters={f"v{index}": value for index, value in enumerate(values)},
        timeout_seconds=60,
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["fill"]["outputs"] == {f"v{index}": value for index, value in enumerate(values)}
    assert not marker.exists()
