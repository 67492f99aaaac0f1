"""Events over HTTP in both CloudEvents modes, and a browser screenshot, end to end."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import aio_pika
import httpx
import pytest
from e2e_support import Account, Platform

from automation_testing import wait_until

pytestmark = pytest.mark.e2e
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_events_in_structured_and_binary_mode_reach_history_and_the_exchange(
    platform: Platform, account: Account
) -> None:
    event_type = f"inventory.synced{secrets.token_hex(3)}"
    connection = await aio_pika.connect_robust(platform.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("automation.events", routing_key=event_type)
        structured_id, binary_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with httpx.AsyncClient(base_url=platform.url("event-gateway"), timeout=10) as client:
            structured = await client.post(
                "/api/v1/events",
                headers={**account.jwt_headers, "Content-Type": "application/cloudevents+json"},
                content=json.dumps(
                    {
                        "specversion": "1.0",
                        "id": structured_id,
                        "source": "/e2e/inventory",
                        "type": event_type,
                        "datacontenttype": "application/json",
                        "data": {"site": "fra1", "items": 3},
                    }
                ),
            )
            assert structured.status_code == 202, structured.text
            binary = await client.post(
                "/api/v1/events",
                headers={
                    **account.jwt_headers,
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-id": binary_id,
                    "ce-source": "/e2e/inventory",
                    "ce-type": event_type,
                },
                content=json.dumps({"site": "ams2", "items": 5}),
            )
            assert binary.status_code == 202, binary.text

            async def both_in_history() -> list[dict[str, Any]] | None:
                resp = await client.get("/api/v1/events", params={"type": event_type}, headers=account.jwt_headers)
                items: list[dict[str, Any]] = resp.json()["items"]
                return items if {structured_id, binary_id} <= {e["id"] for e in items} else None

            history = await wait_until(both_in_history, timeout=20, what="both events in history")
            assert {e["data"]["site"] for e in history} == {"fra1", "ams2"}

        received: dict[str, dict[str, Any]] = {}

        async def both_on_exchange() -> bool:
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                body = json.loads(message.body)
                assert message.content_type == "application/cloudevents+json"
                received[body["id"]] = body
            return {structured_id, binary_id} <= set(received)

        await wait_until(both_on_exchange, timeout=20, what="both events on automation.events")
        assert received[binary_id]["data"] == {"site": "ams2", "items": 5}
        assert received[structured_id]["type"] == event_type
    finally:
        await connection.close()


async def test_browser_pool_screenshots_a_local_page(platform: Platform, account: Account, page_server: str) -> None:
    async with httpx.AsyncClient(base_url=platform.url("browser-pool"), timeout=60) as client:
        resp = await client.post(
            "/api/v1/tasks",
            headers=account.jwt_headers,
            json={
                "task_id": str(uuid.uuid4()),
                "actions": [{"type": "goto", "url": page_server}, {"type": "screenshot", "full_page": True}],
            },
        )
        assert resp.status_code == 200, resp.text
        result = resp.json()
        assert result["ok"] is True, result
        assert result["title"] == "E2E Marker Page"
        (artifact,) = result["artifacts"]
        assert artifact["kind"] == "screenshot"
        png = await client.get(f"/api/v1/artifacts/{artifact['id']}", headers=account.jwt_headers)
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG_SIGNATURE)
        assert len(png.content) == artifact["size_bytes"] > 1000
