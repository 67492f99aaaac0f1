"""Bad input of every kind is a problem naming the field: instants outside the platform's range (the
history's cursor, since and until, an event's time or ce-time), cursors that decode to deep JSON or NUL,
charsets that are no text encoding, and bodies that cannot be read."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from automation_testing.badinput import EDGE, HIGH, LOW, assert_problem, b64, bad_json_cursors

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "t" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    "raw",
    bad_json_cursors(5000)[0],
    ids=bad_json_cursors()[1],
)
async def test_a_history_cursor_that_is_not_ours_is_a_422_naming_cursor(client: httpx.AsyncClient, raw: bytes) -> None:
    assert_problem(await client.get("/api/v1/events", params={"cursor": b64(raw)}, headers=ADMIN), "cursor")


@pytest.mark.parametrize("raw", [b"\x00", b"inventory.\x00", b"\xff"], ids=["nul", "nul-after", "not-utf8"])
async def test_an_event_types_cursor_that_is_not_ours_is_a_422_naming_cursor(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    assert_problem(await client.get("/api/v1/event-types", params={"cursor": b64(raw)}, headers=ADMIN), "cursor")


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("value", [LOW, HIGH, EDGE])
async def test_history_since_and_until_outside_the_range_are_422s(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    resp = await client.get("/api/v1/events", params={field: value}, headers=ADMIN)
    assert "once converted to UTC" in assert_problem(resp, field)["detail"]


def _event(**overrides: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests/bad-input",
        "type": "bad.input",
    } | overrides


def _binary(**headers: str) -> dict[str, str]:
    return {
        **ADMIN,
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/tests/bad-input",
        "ce-type": "bad.input",
        **headers,
    }


@pytest.mark.parametrize("value", [LOW, HIGH, EDGE])
async def test_an_event_time_outside_the_range_is_a_422_naming_it(client: httpx.AsyncClient, value: str) -> None:
    structured = await client.post(
        "/api/v1/events",
        content=json.dumps(_event(time=value)),
        headers={**ADMIN, "Content-Type": "application/cloudevents+json"},
    )
    assert "once converted to UTC" in assert_problem(structured, "time")["detail"]
    batch = await client.post(
        "/api/v1/events",
        content=json.dumps([_event(), _event(time=value)]),
        headers={**ADMIN, "Content-Type": "application/cloudevents-batch+json"},
    )
    assert_problem(batch, "1.time")
    binary = await client.post(
        "/api/v1/events", content=b"x", headers=_binary(**{"Content-Type": "text/plain", "ce-time": value})
    )
    assert "once converted to UTC" in assert_problem(binary, "ce-time")["detail"]


@pytest.mark.parametrize("charset", ["rot13", "base64", "hex", "zlib", "bz2", "quopri", "uu", "undefined"])
async def test_a_charset_that_is_no_text_encoding_is_a_415_naming_content_type(
    client: httpx.AsyncClient, charset: str
) -> None:
    resp = await client.post(
        "/api/v1/events", content=b"hello", headers=_binary(**{"Content-Type": f"text/plain; charset={charset}"})
    )
    assert "not a text encoding" in assert_problem(resp, "content-type", 415)["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"description": "bad\xff"}', "body: not valid UTF-8: invalid start byte at byte 20 (0xff)"),
        (b'{"schema": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body: JSON nested too deeply"),
        (b'{"schema": {"maxLength": ' + b"9" * 5000 + b"}}", "body: an integer has too many digits"),
        (b'{"schema": {},\n "description": }', "body: JSON syntax error at line 2, column 17: Expecting value"),
    ],
    ids=["not-utf8", "too-deep", "long-integer", "syntax"],
)
async def test_an_event_type_body_that_cannot_be_read_is_a_422_naming_body(
    client: httpx.AsyncClient, body: bytes, detail: str
) -> None:
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = await client.put("/api/v1/event-types/bad.input", content=body, headers=headers)
    assert assert_problem(resp, "body")["detail"].startswith(detail)


@pytest.mark.parametrize(
    ("content_type", "body", "detail"),
    [
        ("application/cloudevents+json", b"{bad", "body: JSON syntax error at line 1, column 2: Expecting property"),
        ("application/cloudevents+json", b"[1]", "body: an event must be a JSON object, not an array"),
        ("application/cloudevents+json", b"null", "body: an event must be a JSON object, not null"),
        ("application/cloudevents-batch+json", b"{bad", "body: JSON syntax error at line 1, column 2"),
        ("application/cloudevents-batch+json", b"{}", "body: a batch is a JSON array of events, not an object"),
        ("application/cloudevents-batch+json", b'"x"', "body: a batch is a JSON array of events, not a string"),
        ("application/cloudevents-batch+json", b"null", "body: a batch is a JSON array of events, not null"),
    ],
    ids=[
        "structured-syntax",
        "structured-array",
        "structured-null",
        "batch-syntax",
        "batch-object",
        "batch-string",
        "batch-null",
    ],
)
async def test_an_events_body_that_is_not_what_its_mode_needs_is_a_422_naming_body(
    client: httpx.AsyncClient, content_type: str, body: bytes, detail: str
) -> None:
    resp = await client.post("/api/v1/events", content=body, headers={**ADMIN, "Content-Type": content_type})
    problem = assert_problem(resp, "body")
    assert problem["detail"].startswith(detail)
    assert all(error["field"] == "body" for error in problem.get("errors", []))


async def test_a_batch_item_that_is_no_object_is_a_422_naming_its_index(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/events",
        content=json.dumps([_event(), 1]),
        headers={**ADMIN, "Content-Type": "application/cloudevents-batch+json"},
    )
    problem = assert_problem(resp, "1")
    assert problem["detail"] == "1: an event must be a JSON object, not a number"
