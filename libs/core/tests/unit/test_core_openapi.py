"""The OpenAPI document of a service app: error responses are problem+json with the Problem schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from automation_core.errors import NotFound
from automation_core.http import CurrentPrincipal, create_service_app
from automation_core.openapi import FieldError, Problem, problems
from automation_core.settings import ServiceSettings
from automation_testing.openapi import problem_faults, statuses

ADMIN_TOKEN = "a" * 40
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class Body(BaseModel):
    name: str


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def make_app(tags: list[dict[str, Any]] | None = None) -> FastAPI:
    settings = ServiceSettings(service_name="unit", env="development", admin_token=ADMIN_TOKEN)
    app = create_service_app(settings, title="t", description="d", lifespan=no_lifespan, openapi_tags=tags)

    @app.post("/api/v1/things", tags=["things"], summary="Declared", responses=problems(404, 409, 422))
    async def create(body: Body, principal: CurrentPrincipal) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/api/v1/things/{thing_id}", tags=["things"], summary="FastAPI's default 422 only")
    async def read(thing_id: uuid.UUID, principal: CurrentPrincipal) -> dict[str, str]:
        raise NotFound(f"no thing {thing_id}")

    return app


def test_every_error_response_is_problem_json_and_fastapi_422_is_gone() -> None:
    doc = make_app().openapi()
    assert problem_faults(doc) == []
    assert statuses(doc, "post", "/api/v1/things") == {"200", "401", "404", "409", "422"}
    # FastAPI's 422 (HTTPValidationError, application/json) becomes a problem, with a description that says so
    default = doc["paths"]["/api/v1/things/{thing_id}"]["get"]["responses"]["422"]
    assert default["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}
    assert "field" in default["description"]
    schemas = doc["components"]["schemas"]
    assert {"Problem", "FieldError"} <= set(schemas)
    assert {"HTTPValidationError", "ValidationError"}.isdisjoint(schemas)
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert set(schemas["FieldError"]["properties"]) == {"field", "message", "type", "reason"}


def test_readyz_documents_its_own_body_and_tags_are_kept() -> None:
    doc = make_app([{"name": "things", "description": "Things."}]).openapi()
    readyz = doc["paths"]["/readyz"]["get"]["responses"]
    assert readyz["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ReadinessOut"}
    assert doc["tags"] == [{"name": "things", "description": "Things."}]
    assert make_app().openapi().get("tags") is None


async def test_the_problems_sent_match_the_model() -> None:
    """What the error handlers really send validates against Problem (a 422 with errors, a 404, a 401)."""
    app = make_app()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answers = [
            await client.post("/api/v1/things", json={"name": 1}, headers=auth),
            await client.post("/api/v1/things", content=b"{", headers={**auth, "Content-Type": "application/json"}),
            await client.get("/api/v1/things/not-a-uuid", headers=auth),
            await client.get(f"/api/v1/things/{uuid.uuid4()}", headers=auth),
            await client.get(f"/api/v1/things/{uuid.uuid4()}"),
        ]
    assert [a.status_code for a in answers] == [422, 422, 422, 404, 401]
    for answer in answers:
        assert answer.headers["content-type"] == "application/problem+json"
        problem = Problem.model_validate(answer.json(), strict=True)
        assert set(answer.json()) <= set(Problem.model_fields)
        if answer.status_code == 422:
            assert problem.field is not None
            assert problem.errors
            assert all(set(entry) <= set(FieldError.model_fields) for entry in answer.json()["errors"])
