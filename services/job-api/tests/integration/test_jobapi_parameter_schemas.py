"""Parameters schemas the platform cannot use: refused at create, never fetched, never a 500 at run time.

A job's ``parameters`` must be a schema every service can validate against (see
``automation_contracts.schema_safety``): local references that resolve, no reference cycle that does
not consume input, at most 32 levels deep, RE2 patterns. One stored before those checks gives 422s
naming the place, and patterns are matched in linear time.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractQueue
from jobapi_support import AccountCreds, create_job, job_body

pytestmark = pytest.mark.integration

SELF_REFERENCE = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
DEEP_NOT: dict[str, Any] = json.loads('{"not":' * 40 + "{}" + "}" * 40)
STEPS = [{"name": "s", "type": "shell", "config": {"command": ["true"]}}]
CATASTROPHIC = {"type": "object", "properties": {"r": {"type": "string", "pattern": "^(a+)+$"}}}
EVIL = "a" * 28 + "!"  # Python's backtracking re takes about ten seconds on this; RE2 microseconds


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def runs(amqp: AbstractChannel) -> AbstractQueue:
    """executor.runs, which nothing consumes in these tests."""
    return await amqp.get_queue("executor.runs", ensure=True)


@pytest_asyncio.fixture(loop_scope="session")
async def listener() -> AsyncIterator[tuple[str, list[str]]]:
    """A URL on loopback and the list of connections made to it (nothing must ever connect)."""
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/fetched-by-the-platform.json", connections
    finally:
        server.close()
        await server.wait_closed()


async def _store_parameters(database_url: str, job_id: str, schema: Any) -> None:
    """Put ``schema`` in a job as a release without these checks could have stored it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE job_api.jobs SET parameters = $1::jsonb WHERE id = $2", json.dumps(schema), uuid.UUID(job_id)
        )
    finally:
        await conn.close()


UNUSABLE = [
    ({"$ref": "#/nowhere"}, "parameters.$ref"),
    (SELF_REFERENCE, "parameters.$defs.a.$ref"),
    (
        {"$defs": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#"}]}}, "$ref": "#/$defs/a"},
        "parameters.$defs.a.anyOf.1.$ref",
    ),
    ({"$ref": "http://127.0.0.1:9/x.json"}, "parameters.$ref"),
    ({"$ref": "#/default", "default": {}}, "parameters.$ref"),
    (DEEP_NOT, "parameters" + ".not" * 32),
    ({"properties": {"r": {"type": "string", "pattern": "(a)\\1"}}}, "parameters.properties.r.pattern"),
    ({"patternProperties": {"^(?!x)": {}}}, "parameters.patternProperties.^(?!x)"),
    ({"$defs": {"a": {"$dynamicAnchor": "a"}}}, "parameters.$defs.a.$dynamicAnchor"),
]


@pytest.mark.parametrize(("schema", "field"), UNUSABLE)
@pytest.mark.parametrize("scheduled", [False, True])
async def test_an_unusable_parameters_schema_is_refused_at_create_naming_the_place(
    client: httpx.AsyncClient, account: AccountCreds, schema: dict[str, Any], field: str, scheduled: bool
) -> None:
    schedule = {"schedule": "@yearly", "enabled": False} if scheduled else {}
    resp = await client.post(
        "/api/v1/jobs", json=job_body(parameters=schema, steps=STEPS, **schedule), headers=account.headers
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["field"] == field, resp.text
    assert resp.json()["detail"].startswith(f"{field}: ")


async def test_a_remote_reference_is_refused_and_never_fetched(
    client: httpx.AsyncClient, account: AccountCreds, database_url: str, listener: tuple[str, list[str]]
) -> None:
    url, connections = listener
    for schedule in ({}, {"schedule": "@yearly", "enabled": False}):
        resp = await client.post(
            "/api/v1/jobs", json=job_body(parameters={"$ref": url}, steps=STEPS, **schedule), headers=account.headers
        )
        assert (resp.status_code, resp.json()["field"]) == (422, "parameters.$ref"), resp.text
        assert "nothing is ever fetched" in resp.json()["detail"]
    stored = await create_job(client, account, steps=STEPS)
    await _store_parameters(database_url, stored["id"], {"$ref": url})
    run = await client.post(f"/api/v1/jobs/{stored['id']}/execute", json={}, headers=account.headers)
    assert (run.status_code, run.json()["field"]) == (422, "parameters.$ref"), run.text
    await asyncio.sleep(0.2)
    assert connections == []


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"$ref": "#/nowhere"}, "parameters.$ref"),
        (SELF_REFERENCE, "parameters.$defs.a.$ref"),
        ({"type": "object", "properties": {"r": {"pattern": "(?<=a)b"}}}, "parameters.properties.r.pattern"),
    ],
)
async def test_a_stored_unusable_schema_makes_runs_a_422_naming_it_and_queues_nothing(
    client: httpx.AsyncClient,
    account: AccountCreds,
    database_url: str,
    runs: AbstractQueue,
    schema: dict[str, Any],
    field: str,
) -> None:
    job = await create_job(client, account, steps=STEPS)
    await _store_parameters(database_url, job["id"], schema)
    resp = await client.post(
        f"/api/v1/jobs/{job['id']}/execute", json={"parameters": {"r": "b"}}, headers=account.headers
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["field"] == field
    assert await runs.get(no_ack=True, fail=False) is None


async def test_a_catastrophic_pattern_is_matched_in_linear_time(
    client: httpx.AsyncClient, account: AccountCreds
) -> None:
    job = await create_job(client, account, parameters=CATASTROPHIC, steps=STEPS)
    keyed = await create_job(
        client,
        account,
        parameters={
            "type": "object",
            "patternProperties": {"^(a+)+$": {"type": "integer"}},
            "additionalProperties": False,
        },
        steps=STEPS,
    )
    started = time.monotonic()
    value = await client.post(
        f"/api/v1/jobs/{job['id']}/execute", json={"parameters": {"r": EVIL}}, headers=account.headers
    )
    key = await client.post(
        f"/api/v1/jobs/{keyed['id']}/execute", json={"parameters": {EVIL: 1}}, headers=account.headers
    )
    elapsed = time.monotonic() - started
    assert (value.status_code, value.json()["field"]) == (422, "parameters.r"), value.text
    assert (key.status_code, key.json()["field"]) == (422, f"parameters.{EVIL}"), key.text
    assert elapsed < 1.0, f"pattern matching took {elapsed:.1f} s"
