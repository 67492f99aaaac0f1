"""The app factory: health, readiness, metrics, problem+json and authentication on every service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from automation_core.errors import Conflict, InvalidInput
from automation_core.health import Readiness
from automation_core.http import CurrentPrincipal, create_service_app
from automation_core.settings import ServiceSettings

ADMIN_TOKEN = "a" * 40


class Body(BaseModel):
    name: str = Field(min_length=1)
    count: int


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def make_app(readiness: Readiness) -> FastAPI:
    settings = ServiceSettings(service_name="unit", env="development", admin_token=ADMIN_TOKEN)  # type: ignore[arg-type]
    app = create_service_app(settings, title="t", description="d", lifespan=no_lifespan, readiness=readiness)

    @app.post("/api/v1/things")
    async def create(body: Body, principal: CurrentPrincipal) -> dict[str, str]:
        if body.name == "dup":
            raise Conflict("a thing with this name exists", field="name")
        if body.name == "bad":
            raise InvalidInput("name 'bad' is reserved", field="name")
        return {"name": body.name, "by": principal.subject}

    return app


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def client(readiness: Readiness) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(readiness)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_healthz_is_the_process_alone(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "service": "unit"}


async def test_readyz_reports_each_failing_check(client: httpx.AsyncClient, readiness: Readiness) -> None:
    assert (await client.get("/readyz")).status_code == 503

    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("connection refused")

    readiness.add("database", ok)
    assert (await client.get("/readyz")).status_code == 200
    readiness.add("broker", down)
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"] == {"database": "ok", "broker": "failing: connection refused"}


async def test_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    await client.post(
        "/api/v1/things", json={"name": "x", "count": 1}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    text = (await client.get("/metrics")).text
    assert 'automation_http_requests_total{method="POST",route="/api/v1/things",service="unit",status="200"}' in text
    assert 'automation_build_info{service="unit"' in text


async def test_missing_or_wrong_credentials_are_401_problems(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        resp = await client.post("/api/v1/things", json={"name": "x", "count": 1}, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_validation_and_domain_errors_name_the_field(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = await client.post("/api/v1/things", json={"name": "x", "count": "many"}, headers=auth)
    assert resp.status_code == 422
    problem = resp.json()
    assert resp.headers["content-type"] == "application/problem+json"
    assert problem["field"] == "count"
    assert problem["status"] == 422
    assert problem["type"].endswith("/invalid-input")
    resp = await client.post("/api/v1/things", json={"name": "dup", "count": 1}, headers=auth)
    assert (resp.status_code, resp.json()["field"]) == (409, "name")
    resp = await client.post("/api/v1/things", json={"name": "bad", "count": 1}, headers=auth)
    assert (resp.status_code, resp.json()["field"]) == (422, "name")
    resp = await client.get("/nowhere", headers=auth)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
