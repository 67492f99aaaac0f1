"""Registered schemas the gateway cannot use: refused at registration, and never a 500 when one is stored.

The rules are ``automation_contracts.schema_safety``: at most 32 levels deep, references that resolve
offline, no reference cycle that does not consume input, RE2 patterns (matched in linear time).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "t" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
SELF_REFERENCE = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
EVIL = "a" * 28 + "!"  # Python's backtracking re takes about ten seconds for ^(a+)+$ on this; RE2 microseconds


def unique_type() -> str:
    return f"inventory.checked-{uuid.uuid4().hex[:8]}"


def ce(event_type: str, data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/inventory", "type": event_type, "data": data}


async def register(client: httpx.AsyncClient, event_type: str, schema: Any) -> httpx.Response:
    return await client.put(f"/api/v1/event-types/{event_type}", json={"schema": schema}, headers=ADMIN)


async def post(client: httpx.AsyncClient, event_type: str, data: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/events", content=json.dumps(ce(event_type, data)), headers={**ADMIN, **STRUCTURED}
    )


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        (SELF_REFERENCE, "schema.$defs.a.$ref"),
        ({"allOf": [{"$ref": "#"}]}, "schema.allOf.0.$ref"),
        (json.loads('{"not":' * 40 + "{}" + "}" * 40), "schema" + ".not" * 32),
        ({"properties": {"site": {"type": "string", "pattern": "(a)\\1"}}}, "schema.properties.site.pattern"),
        ({"patternProperties": {"^(?!x)": {}}}, "schema.patternProperties.^(?!x)"),
        ({"$ref": "#/default", "default": {}}, "schema.$ref"),
        ({"$defs": {"a": {"$dynamicAnchor": "a"}}}, "schema.$defs.a.$dynamicAnchor"),
    ],
)
async def test_unusable_schemas_are_refused_at_registration(client: httpx.AsyncClient, schema: Any, field: str) -> None:
    event_type = unique_type()
    resp = await register(client, event_type, schema)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["field"] == field
    missing = await client.get(f"/api/v1/event-types/{event_type}", headers=ADMIN)
    assert missing.status_code == 404


async def test_a_schema_nested_300_levels_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    deep = json.loads('{"not":' * 300 + "{}" + "}" * 300)
    resp = await register(client, unique_type(), deep)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith("schema.not.not")


async def test_a_recursive_schema_that_consumes_input_is_accepted_and_enforced(client: httpx.AsyncClient) -> None:
    event_type = unique_type()
    tree = {
        "$defs": {
            "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
        },
        "$ref": "#/$defs/node",
    }
    assert (await register(client, event_type, tree)).status_code == 201
    assert (await post(client, event_type, {"children": [{"children": []}]})).status_code == 202
    bad = await post(client, event_type, {"children": [{"children": 5}]})
    assert (bad.status_code, bad.json()["field"]) == (422, "data.children.0.children")


async def test_a_catastrophic_pattern_is_matched_in_linear_time(client: httpx.AsyncClient) -> None:
    event_type = unique_type()
    schema = {
        "type": "object",
        "properties": {"site": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(b+)+$": {"type": "integer"}},
    }
    assert (await register(client, event_type, schema)).status_code == 201
    started = time.monotonic()
    value = await post(client, event_type, {"site": EVIL})
    key = await post(client, event_type, {"b" * 28 + "!": 1, "site": "aaa"})
    elapsed = time.monotonic() - started
    assert (value.status_code, value.json()["field"]) == (422, "data.site"), value.text
    assert key.status_code == 202, key.text
    assert elapsed < 1.0, f"pattern matching took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (SELF_REFERENCE, "schema.$defs.a.$ref: reference cycle"),
        ({"$ref": "#/nowhere"}, "schema.$ref: cannot resolve '#/nowhere'"),
        ({"$ref": "http://127.0.0.1:9/remote.json"}, "schema.$ref: cannot resolve"),
        ({"properties": {"site": {"pattern": "(?<=a)b"}}}, "schema.properties.site.pattern"),
    ],
)
async def test_a_stored_unusable_schema_makes_its_events_a_422_naming_data(
    client: httpx.AsyncClient, database_url: str, schema: Any, says: str
) -> None:
    """A type registered before these checks (stored directly, as an older release let it be)."""
    event_type = unique_type()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO event_gateway.event_types (type, schema) VALUES ($1, $2::jsonb)",
            event_type,
            json.dumps(schema),
        )
    finally:
        await conn.close()
    for _ in range(2):  # the compiled validator is cached: the second event meets the cached one
        resp = await post(client, event_type, {"site": "b"})
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["field"] == "data"
        assert f"the registered schema of {event_type!r} cannot be used" in problem["detail"]
        assert says in problem["detail"]
