"""Helpers shared by job-api's integration tests (imported as ``jobapi_support``; see conftest.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

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


def job_body(name: str | None = None, **changes: Any) -> dict[str, Any]:
    """A valid job definition (a shell step and an http step with templates)."""
    body: dict[str, Any] = {
        "name": name if name is not None else f"job-{uuid.uuid4().hex[:8]}",
        "description": "integration test job",
        "schedule": "0 2 * * 1-5",
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
