"""The app factory: health, readiness, metrics, problem+json and authentication on every service."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"name": "bad\xff", "count": 1}', "body: not valid UTF-8: invalid start byte at byte 13 (0xff)"),
        (b'{"name": "x", "count": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body: JSON nested too deeply to be parsed"),
        (b'{"name": "x", "count": ' + b"9" * 5000 + b"}", "body: an integer has too many digits"),
        (b'{"name": "x",\n "count": }', "body: JSON syntax error at line 2, column 11: Expecting value"),
        (b'{"name": "x", "count": 1', "body: JSON syntax error at line 1, column 25: Expecting ',' delimiter"),
        (b"", "body: Field required"),
    ],
)
async def test_a_body_that_cannot_be_read_is_a_422_naming_body(
    client: httpx.AsyncClient, body: bytes, detail: str
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    resp = await client.post("/api/v1/things", content=body, headers=headers)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"].endswith("/invalid-input")
    assert problem["field"] == "body"
    assert problem["detail"].startswith(detail)
    assert problem["errors"][0]["field"] == "body"


class _PostgresError(Exception):
    sqlstate = "57P03"  # cannot connect now: the server is starting up or shutting down


class _WrappedByTheOrm(Exception):
    """What SQLAlchemy raises: the driver's error as ``orig``."""

    def __init__(self, orig: BaseException | None = None, *, invalidated: bool = False) -> None:
        super().__init__("wrapped")
        self.orig = orig
        self.connection_invalidated = invalidated


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def failing_client(readiness: Readiness) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(readiness)

    @app.get("/api/v1/fail/{how}")
    async def fail(how: str) -> None:
        if how == "refused":  # a real refusal, as a pool meets while the database restarts
            try:
                await asyncio.open_connection("127.0.0.1", _closed_port())
            except OSError as exc:
                raise _WrappedByTheOrm() from exc
        if how == "starting-up":
            raise _WrappedByTheOrm(_PostgresError("the database system is starting up"))
        if how == "invalidated":
            raise _WrappedByTheOrm(invalidated=True)
        raise ValueError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@pytest.mark.parametrize(
    ("how", "cause"),
    [("refused", "ConnectionRefusedError"), ("starting-up", "_PostgresError"), ("invalidated", "_WrappedByTheOrm")],
)
async def test_a_dependency_that_cannot_be_reached_is_a_503_to_retry(
    failing_client: httpx.AsyncClient, how: str, cause: str
) -> None:
    resp = await failing_client.get(f"/api/v1/fail/{how}")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["retry-after"] == "2"
    problem = resp.json()
    assert problem["type"].endswith("/unavailable")
    assert problem["detail"] == f"a service this one depends on could not be reached ({cause}); try again shortly"
    assert problem["instance"] == f"/api/v1/fail/{how}"
    text = (await failing_client.get("/metrics")).text
    assert 'route="/api/v1/fail/{how}",service="unit",status="503"' in text


async def test_any_other_unexpected_error_stays_a_500(failing_client: httpx.AsyncClient) -> None:
    resp = await failing_client.get("/api/v1/fail/bug")
    assert resp.status_code == 500
    assert resp.json()["type"].endswith("/internal-error")
    assert "retry-after" not in resp.headers
