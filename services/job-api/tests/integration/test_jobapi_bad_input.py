"""Bad input of every kind is a 422 problem naming the field: instants outside the platform's range,
cursors that decode to deep JSON, NUL or such instants, and bodies that cannot be read."""

from __future__ import annotations

import uuid

import httpx
import pytest
from jobapi_support import ADMIN, AccountCreds, job_body

from automation_testing.badinput import EDGE, HIGH, LOW, assert_problem, b64, bad_json_cursors

pytestmark = pytest.mark.integration

SHELL = {"parameters": {"type": "object"}, "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}]}
LISTS = ["/api/v1/jobs", "/api/v1/executions", "/api/v1/accounts", "/api/v1/dead-letters"]


def _auth(path: str, account: AccountCreds) -> dict[str, str]:
    return ADMIN if path in {"/api/v1/accounts", "/api/v1/dead-letters"} else account.headers


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "raw",
    bad_json_cursors(3000)[0],
    ids=bad_json_cursors()[1],
)
async def test_a_cursor_that_is_not_ours_is_a_422_naming_cursor(
    client: httpx.AsyncClient, account: AccountCreds, path: str, raw: bytes
) -> None:
    resp = await client.get(path, params={"cursor": b64(raw)}, headers=_auth(path, account))
    assert_problem(resp, "cursor")


@pytest.mark.parametrize("path", LISTS)
async def test_a_cursor_of_5000_brackets_is_a_422_naming_cursor(
    client: httpx.AsyncClient, account: AccountCreds, path: str
) -> None:
    resp = await client.get(path, params={"cursor": b64(b"[" * 5000)}, headers=_auth(path, account))
    assert_problem(resp, "cursor")


@pytest.mark.parametrize("value", [LOW, HIGH, EDGE])
async def test_dead_letters_since_and_purge_before_outside_the_range_are_422s(
    client: httpx.AsyncClient, value: str
) -> None:
    listed = await client.get("/api/v1/dead-letters", params={"since": value}, headers=ADMIN)
    assert "once converted to UTC" in assert_problem(listed, "since")["detail"]
    purged = await client.post(
        "/api/v1/dead-letters/purge", json={"original_queue": "no-such-queue", "before": value}, headers=ADMIN
    )
    assert "once converted to UTC" in assert_problem(purged, "before")["detail"]


@pytest.mark.parametrize("field", ["start_at", "end_at"])
@pytest.mark.parametrize("value", [LOW, HIGH, EDGE])
@pytest.mark.parametrize("schedule", ["@hourly", None])
async def test_a_job_window_outside_the_range_is_a_422_naming_it(
    client: httpx.AsyncClient, account: AccountCreds, field: str, value: str, schedule: str | None
) -> None:
    body = job_body(schedule=schedule, **SHELL, **{field: value})
    created = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert "once converted to UTC" in assert_problem(created, field)["detail"]
    job = await client.post("/api/v1/jobs", json=job_body(**SHELL), headers=account.headers)
    assert job.status_code == 201, job.text
    replaced = await client.put(f"/api/v1/jobs/{job.json()['id']}", json=body, headers=account.headers)
    assert_problem(replaced, field)


async def test_a_job_window_at_the_ends_of_the_range_is_taken(client: httpx.AsyncClient, account: AccountCreds) -> None:
    body = job_body(
        schedule="@hourly",
        **SHELL,
        start_at="0001-01-02T14:00:00+14:00",
        end_at="9998-12-31T13:59:59.999999-10:00",
    )
    created = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert created.status_code == 201, created.text


def _deep_body() -> bytes:
    return b'{"name": "deep", "parameters": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"name": "bad\xff", "steps": []}', "body: not valid UTF-8: invalid start byte at byte 13 (0xff)"),
        (_deep_body(), "body: JSON nested too deeply to be parsed"),
        (
            b'{"name": "n", "timeout_seconds": ' + b"9" * 5000 + b', "steps": []}',
            "body: an integer has too many digits",
        ),
        (b'{"name": "x", "steps": [}', "body: JSON syntax error at line 1, column 25: Expecting value"),
        (b'{"name": "x",\n  "steps": [}', "body: JSON syntax error at line 2, column 13: Expecting value"),
    ],
    ids=["not-utf8", "too-deep", "long-integer", "syntax", "syntax-line-2"],
)
async def test_a_body_that_cannot_be_read_is_a_422_naming_body(
    client: httpx.AsyncClient, account: AccountCreds, body: bytes, detail: str
) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    for resp in (
        await client.post("/api/v1/jobs", content=body, headers=headers),
        await client.put(f"/api/v1/jobs/{uuid.uuid4()}", content=body, headers=headers),
    ):
        problem = assert_problem(resp, "body")
        assert problem["type"].endswith("/invalid-input")
        assert problem["detail"].startswith(detail), problem
        assert problem["errors"][0]["field"] == "body"
