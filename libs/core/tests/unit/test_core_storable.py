"""Input PostgreSQL cannot keep is refused before a handler sees it, naming the parameter or field."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from automation_core.health import Readiness
from automation_core.http import CurrentPrincipal, create_service_app
from automation_core.settings import ServiceSettings
from automation_core.storable import checks_its_own_body

ADMIN = {"Authorization": "Bearer " + "a" * 40}
SEEN: list[Any] = []


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def make_app() -> FastAPI:
    settings = ServiceSettings(service_name="unit", env="development", admin_token="a" * 40)
    app = create_service_app(settings, title="t", description="d", lifespan=no_lifespan, readiness=Readiness())

    @app.post("/things/{name}")
    async def create(name: str, body: dict[str, Any], _: CurrentPrincipal, tag: str = "") -> dict[str, Any]:
        SEEN.append(body)
        return {"name": name, "tag": tag, "body": body}

    @app.post("/raw")
    @checks_its_own_body
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    SEEN.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        yield c


def _json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {**ADMIN, "Content-Type": "application/json"}}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('{"steps": [{"config": {"json": {"v": NaN}}}]}', "steps.0.config.json.v", "NaN is not a JSON number"),
        ('{"parameters": {"x": Infinity}}', "parameters.x", "Infinity is not a JSON number"),
        ('{"parameters": {"x": [1, -Infinity]}}', "parameters.x.1", "-Infinity is not a JSON number"),
        ('{"n": 1e999}', "n", "numbers must be finite"),
        ('{"name": "a\\u0000b"}', "name", "NUL (U+0000)"),
        ('{"a": {"k\\u0000": 1}}', "a", "keys must not contain NUL"),
        ('{"first": "\\u0000", "second": NaN}', "first", "NUL"),  # the first fault in the document
    ],
)
async def test_a_json_body_is_refused_at_the_field(
    client: httpx.AsyncClient, body: str, field: str, words: str
) -> None:
    resp = await client.post("/things/x", **_json(body))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["field"] == field
    assert words in resp.json()["detail"]
    assert SEEN == []  # the handler never ran


async def test_what_only_looks_suspect_passes(client: httpx.AsyncClient) -> None:
    body = '{"text": "\\\\u0000 NaN Infinity", "n": 1.5}'  # an escaped backslash, and words in a string
    resp = await client.post("/things/x", **_json(body))
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"] == {"text": "\\u0000 NaN Infinity", "n": 1.5}


async def test_a_body_without_a_content_type_is_checked_as_fastapi_reads_it(client: httpx.AsyncClient) -> None:
    resp = await client.post("/things/x", content=b'{"v": NaN}', headers=ADMIN)
    assert (resp.status_code, resp.json()["field"]) == (422, "v")


async def test_a_body_nested_deeper_than_the_messages_can_carry_is_refused_at_the_field(
    client: httpx.AsyncClient,
) -> None:
    """The platform's consumers parse at most ~200 levels, and a step's config travels a few levels down
    in ``run.requested``: accepted deeper, a job would be stored and its runs dead-lettered."""
    from automation_core.storable import MAX_JSON_DEPTH

    def nested(levels: int) -> str:  # the body is level 1; "json" holds the rest
        inner = "[" * (levels - 1) + "]" * (levels - 1)
        return f'{{"json": {inner}}}'

    fits = await client.post("/things/x", **_json(nested(MAX_JSON_DEPTH)))
    assert fits.status_code == 200, fits.text
    deep = await client.post("/things/x", **_json(nested(MAX_JSON_DEPTH + 1)))
    assert deep.status_code == 422, deep.text
    assert deep.headers["content-type"] == "application/problem+json"
    field = "json" + ".0" * (MAX_JSON_DEPTH - 1)
    assert deep.json()["field"] == field
    assert deep.json()["detail"] == f"{field}: nested deeper than {MAX_JSON_DEPTH} levels"
    wide = '{"items": [' + ", ".join(["[{}]"] * 300) + "]}"  # many brackets, shallow: passes
    assert (await client.post("/things/x", **_json(wide))).status_code == 200
    assert len(SEEN) == 2


async def test_path_and_query_parameters_with_nul_are_refused(client: httpx.AsyncClient) -> None:
    in_path = await client.post("/things/a%00b", **_json("{}"))
    assert (in_path.status_code, in_path.json()["field"]) == (422, "name")
    in_query = await client.post("/things/x?tag=a%00", **_json("{}"))
    assert (in_query.status_code, in_query.json()["field"]) == (422, "tag")
    assert SEEN == []


async def test_a_route_that_checks_its_own_body_is_left_to_it(client: httpx.AsyncClient) -> None:
    resp = await client.post("/raw", **_json('{"v": NaN, "s": "\\u0000"}'))
    assert resp.status_code == 200, resp.text
    refused = await client.post("/raw?x=%00", **_json("{}"))
    assert (refused.status_code, refused.json()["field"]) == (422, "x")
