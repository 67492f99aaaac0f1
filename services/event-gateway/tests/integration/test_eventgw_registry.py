"""The schema registry over HTTP, and registered schemas enforced on posted events."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from automation_contracts import EVENT_MODELS
from automation_core.auth import issue_token
from automation_event_gateway.settings import EventGatewaySettings

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "t" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
SITE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["site"],
    "properties": {"site": {"type": "string", "minLength": 1}, "items": {"type": "integer", "minimum": 0}},
}


def unique_type() -> str:
    return f"inventory.synced-{uuid.uuid4().hex[:8]}"


def ce(event_type: str, data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/inventory", "type": event_type, "data": data}


async def register(client: httpx.AsyncClient, event_type: str, schema: Any = SITE_SCHEMA) -> httpx.Response:
    return await client.put(
        f"/api/v1/event-types/{event_type}", json={"description": "Inventory pulled", "schema": schema}, headers=ADMIN
    )


async def test_register_read_and_replace(client: httpx.AsyncClient) -> None:
    event_type = unique_type()
    created = await register(client, event_type)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["type"] == event_type
    assert body["schema"] == SITE_SCHEMA
    assert body["description"] == "Inventory pulled"
    assert (body["version"], body["builtin"]) == (1, False)

    replaced = await register(client, event_type, {"type": "object"})
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2
    assert replaced.json()["created_at"] == body["created_at"]

    read = await client.get(f"/api/v1/event-types/{event_type}", headers=ADMIN)
    assert read.status_code == 200
    assert read.json()["schema"] == {"type": "object"}


async def test_platform_types_are_listed_read_only(client: httpx.AsyncClient) -> None:
    read = await client.get("/api/v1/event-types/job.created", headers=ADMIN)
    assert read.status_code == 200
    assert read.json()["builtin"] is True
    assert read.json()["schema"]["$id"] == "urn:automation:schema:job.created:v1"
    refused = await register(client, "job.created")
    assert (refused.status_code, refused.json()["field"]) == (422, "type")
    assert (await register(client, "execution.custom")).status_code == 422


async def test_listing_merges_platform_and_registered_types_by_name(client: httpx.AsyncClient) -> None:
    mine = {unique_type() for _ in range(3)} | {"aaa.first", "zzz.last"}
    for event_type in mine:
        assert (await register(client, event_type)).is_success
    names: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/event-types", params=params, headers=ADMIN)).json()
        names += [item["type"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(EVENT_MODELS) | mine <= set(names)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schema": {"type": "strin"}}, "schema.type"),
        ({"schema": {"properties": {"site": {"minLength": -1}}}}, "schema.properties.site.minLength"),
        ({"schema": {"$schema": "http://json-schema.org/draft-07/schema#"}}, "schema.$schema"),
        ({"schema": {"$ref": "https://example.com/remote.json"}}, "schema.$ref"),
        ({"schema": []}, "schema"),
        ({"description": "no schema"}, "schema"),
        ({"schema": {}, "extra": 1}, "extra"),
    ],
)
async def test_invalid_registrations_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    resp = await client.put(f"/api/v1/event-types/{unique_type()}", json=body, headers=ADMIN)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_bad_type_names_and_unknown_types(client: httpx.AsyncClient) -> None:
    resp = await client.put("/api/v1/event-types/a.*", json={"schema": {}}, headers=ADMIN)
    assert (resp.status_code, resp.json()["field"]) == (422, "type")
    assert (await client.get(f"/api/v1/event-types/{unique_type()}", headers=ADMIN)).status_code == 404


async def test_registering_needs_the_admin(client: httpx.AsyncClient, settings: EventGatewaySettings) -> None:
    token, _ = issue_token(settings, account_id=uuid.uuid4())
    account = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"schema": {}}
    assert (await client.put(f"/api/v1/event-types/{unique_type()}", json=body, headers=account)).status_code == 403
    assert (await client.put(f"/api/v1/event-types/{unique_type()}", json=body)).status_code == 401
    assert (await client.get("/api/v1/event-types")).status_code == 401
    assert (await client.get("/api/v1/event-types", headers=account)).status_code == 200


async def test_registered_schemas_are_enforced(client: httpx.AsyncClient) -> None:
    event_type = unique_type()
    free = await client.post("/api/v1/events", content=json.dumps(ce(event_type, {})), headers={**ADMIN, **STRUCTURED})
    assert free.status_code == 202, "before registration any data goes"
    assert (await register(client, event_type)).status_code == 201

    structured = await client.post(
        "/api/v1/events", content=json.dumps(ce(event_type, {"items": 3})), headers={**ADMIN, **STRUCTURED}
    )
    assert (structured.status_code, structured.json()["field"]) == (422, "data.site")
    wrong_type = await client.post(
        "/api/v1/events",
        content=json.dumps(ce(event_type, {"site": "x", "items": -1})),
        headers={**ADMIN, **STRUCTURED},
    )
    assert (wrong_type.status_code, wrong_type.json()["field"]) == (422, "data.items")
    binary = await client.post(
        "/api/v1/events",
        content=b'{"site": ""}',
        headers={
            **ADMIN,
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "/inventory",
            "ce-type": event_type,
        },
    )
    assert (binary.status_code, binary.json()["field"]) == (422, "data.site")
    batch = await client.post(
        "/api/v1/events",
        content=json.dumps([ce(event_type, {"site": "a"}), ce(event_type, None)]),
        headers={**ADMIN, "Content-Type": "application/cloudevents-batch+json"},
    )
    assert (batch.status_code, batch.json()["field"]) == (422, "1.data")
    valid = await client.post(
        "/api/v1/events", content=json.dumps(ce(event_type, {"site": "fra1"})), headers={**ADMIN, **STRUCTURED}
    )
    assert valid.status_code == 202

    assert (await register(client, event_type, {"type": "object", "required": ["region"]})).status_code == 200
    replaced = await client.post(
        "/api/v1/events", content=json.dumps(ce(event_type, {"site": "fra1"})), headers={**ADMIN, **STRUCTURED}
    )
    assert (replaced.status_code, replaced.json()["field"]) == (422, "data.region")


async def test_registered_types_are_counted_by_name(client: httpx.AsyncClient) -> None:
    event_type = unique_type()
    assert (await register(client, event_type)).status_code == 201
    event = ce(event_type, {"site": "fra1"})
    assert (await client.post("/api/v1/events", content=json.dumps(event), headers={**ADMIN, **STRUCTURED})).is_success
    metrics = (await client.get("/metrics")).text
    assert f'automation_events_ingested_total{{source_kind="http",type="{event_type}"}} 1.0' in metrics
