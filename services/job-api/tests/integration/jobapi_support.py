"""Helpers shared by job-api's integration tests (imported as ``jobapi_support``; see conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from fastapi import FastAPI

from automation_contracts import CloudEvent
from automation_job_api.settings import JobApiSettings
from automation_testing import wait_until

ADMIN_TOKEN = "t" * 32
JWT_SECRET = "x" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_settings(database_url: str, amqp_url: str) -> JobApiSettings:
    return JobApiSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        jobs_gauge_refresh_seconds=0.5,
        shutdown_grace_seconds=2,
    )


@dataclass(frozen=True, slots=True)
class AccountCreds:
    """An account made through the API, and the headers that act as it."""

    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def new_account(client: httpx.AsyncClient, name: str | None = None) -> AccountCreds:
    resp = await client.post("/api/v1/accounts", json={"name": name or f"acct-{uuid.uuid4().hex[:8]}"}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return AccountCreds(id=body["id"], api_key=body["api_key"])


async def publish(channel: AbstractChannel, exchange: str, routing_key: str, body: bytes, **props: Any) -> None:
    """Publish raw bytes (persistent) and wait for the confirm."""
    target = await channel.get_exchange(exchange)
    message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props)
    await target.publish(message, routing_key=routing_key)


async def publish_event(channel: AbstractChannel, event: CloudEvent, exchange: str = "automation.events") -> None:
    await publish(
        channel,
        exchange,
        event.type,
        event.to_json_bytes(),
        content_type="application/cloudevents+json",
        message_id=event.id,
    )


async def next_message(queue: AbstractQueue, *, what: str, timeout: float = 10.0) -> AbstractIncomingMessage:
    """The next message on ``queue`` (acknowledged), waiting up to ``timeout``."""

    async def probe() -> AbstractIncomingMessage | None:
        return await queue.get(no_ack=True, fail=False)

    return await wait_until(probe, timeout=timeout, what=what)


async def stored_dead_letter(client: httpx.AsyncClient, message_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The dead letter with this message id once job-api has stored it (``GET /dead-letters/{id}``)."""

    async def probe() -> dict[str, Any] | None:
        resp = await client.get("/api/v1/dead-letters", params={"limit": 200}, headers=ADMIN)
        assert resp.status_code == 200, resp.text
        found = [item for item in resp.json()["items"] if item["message_id"] == message_id]
        if not found:
            return None
        detail = await client.get(f"/api/v1/dead-letters/{found[0]['id']}", headers=ADMIN)
        assert detail.status_code == 200, detail.text
        letter: dict[str, Any] = detail.json()
        return letter

    return await wait_until(probe, timeout=timeout, what=f"dead letter {message_id} stored")


def job_body(name: str | None = None, **changes: Any) -> dict[str, Any]:
    """A valid job definition (a shell step and an http step with templates), run by hand.

    Its ``count`` parameter is required without a default, so it takes no schedule unless ``parameters``
    changes too (a scheduled run has nobody to give it).
    """
    body: dict[str, Any] = {
        "name": name if name is not None else f"job-{uuid.uuid4().hex[:8]}",
        "description": "integration test job",
        "schedule": None,
        "timezone": "Europe/Berlin",
        "timeout_seconds": 300,
        "retries": 2,
        "retry_backoff": {"base_seconds": 1, "max_seconds": 30},
        "parameters": {
            "type": "object",
            "properties": {"site": {"type": "string", "default": "fra1"}, "count": {"type": "integer"}},
            "required": ["count"],
        },
        "steps": [
            {
                "name": "fetch",
                "type": "http",
                "config": {"url": "https://inventory.internal/api/${{ parameters.site }}", "expected_status": [200]},
            },
            {"name": "report", "type": "shell", "config": {"command": ["echo", "${{ steps.fetch.output.status }}"]}},
        ],
    }
    body.update(changes)
    return body


async def create_job(client: httpx.AsyncClient, creds: AccountCreds, **changes: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/jobs", json=job_body(**changes), headers=creds.headers)
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    return job


@dataclass
class Frame:
    """One server-sent event (or comment) as a client parses it."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None


@dataclass
class EventStream:
    """The body of a streamed response, read frame by frame as the app sends it."""

    status: int
    headers: dict[str, str]
    chunks: asyncio.Queue[bytes | None]
    buffer: str = ""
    ended: bool = False
    frames: list[Frame] = field(default_factory=list)

    async def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame; None once the response is complete."""
        while "\n\n" not in self.buffer:
            if self.ended:
                return None
            chunk = await asyncio.wait_for(self.chunks.get(), timeout=timeout)
            if chunk is None:
                self.ended = True
            else:
                self.buffer += chunk.decode("utf-8")
        block, self.buffer = self.buffer.split("\n\n", 1)
        frame = Frame()
        data: list[str] = []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                frame.comment = value
            elif name == "data":
                data.append(value)
            elif name == "event":
                frame.event = value
            elif name == "id":
                frame.id = value
        frame.data = "\n".join(data)
        self.frames.append(frame)
        return frame


@contextlib.asynccontextmanager
async def stream_get(app: FastAPI, url: str, headers: dict[str, str]) -> AsyncIterator[EventStream]:
    """GET ``url`` straight through the ASGI app, reading the body while it is sent (httpx's ASGI
    transport waits for the whole body); leaving the block disconnects the client."""
    path, _, query = url.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    disconnected = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raw = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            started.set_result((message["status"], raw))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await chunks.put(message["body"])
            if not message.get("more_body", False):
                await chunks.put(None)

    task = asyncio.create_task(app(scope, receive, send))
    try:
        status, response_headers = await asyncio.wait_for(started, timeout=5)
        yield EventStream(status, response_headers, chunks)
    finally:
        disconnected.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=5)
