"""The ``route`` label of the HTTP metrics and of the ``http_request`` log line: the full template a caller
sees, whatever the routers' nesting, and ``unmatched`` only for a request no route took (a 404)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.settings import ServiceSettings

SERVICE = "unit-routes"


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def make_app() -> FastAPI:
    """The executor's layout: a router with the ``/api/v1`` prefix including prefix-less routers, plus a
    router included under a prefix of the include itself, and one more level of nesting."""
    settings = ServiceSettings(service_name=SERVICE, env="development")
    app = create_service_app(settings, title="t", description="d", lifespan=no_lifespan, readiness=Readiness())

    workers = APIRouter(tags=["workers"])

    @workers.get("/workers/self")
    async def worker_self() -> dict[str, str]:
        return {"id": "w"}

    attempts = APIRouter(tags=["attempts"])

    @attempts.get("/attempts/{execution_id}")
    async def attempt(execution_id: int) -> dict[str, int]:
        return {"execution_id": execution_id}

    deepest = APIRouter(prefix="/deepest")

    @deepest.post("/things/{job_id}")
    async def thing(job_id: str) -> dict[str, str]:
        return {"job_id": job_id}

    deeper = APIRouter(prefix="/deeper")
    deeper.include_router(deepest)
    api = APIRouter(prefix="/api/v1")
    api.include_router(workers)
    api.include_router(attempts)
    api.include_router(deeper, prefix="/more")
    app.include_router(api)

    legacy = APIRouter()

    @legacy.get("/status")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(legacy, prefix="/legacy")
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        yield c


def requests(method: str, route: str, status: int) -> float:
    labels = {"service": SERVICE, "method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("automation_http_requests_total", labels) or 0.0


def observed(method: str, route: str) -> float:
    labels = {"service": SERVICE, "method": method, "route": route}
    return REGISTRY.get_sample_value("automation_http_request_duration_seconds_count", labels) or 0.0


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/api/v1/workers/self", 200, "/api/v1/workers/self"),
        ("GET", "/api/v1/attempts/7", 200, "/api/v1/attempts/{execution_id}"),
        ("GET", "/api/v1/attempts/seven", 422, "/api/v1/attempts/{execution_id}"),
        ("DELETE", "/api/v1/attempts/7", 405, "/api/v1/attempts/{execution_id}"),
        ("POST", "/api/v1/more/deeper/deepest/things/j-1", 200, "/api/v1/more/deeper/deepest/things/{job_id}"),
        ("GET", "/legacy/status", 200, "/legacy/status"),
        ("GET", "/healthz", 200, "/healthz"),
    ],
)
async def test_nested_routers_are_labelled_by_their_full_template(
    client: httpx.AsyncClient, method: str, path: str, status: int, route: str
) -> None:
    before, before_observed = requests(method, route, status), observed(method, route)
    with capture_logs() as logs:
        resp = await client.request(method, path)
    assert resp.status_code == status
    assert requests(method, route, status) == before + 1
    assert observed(method, route) == before_observed + 1
    lines = [line for line in logs if line["event"] == "http_request"]
    if path != "/healthz":
        assert [(line["route"], line["status"]) for line in lines] == [(route, status)]


async def test_a_nested_routes_path_parameters_are_still_logged(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        await client.post("/api/v1/more/deeper/deepest/things/j-9")
    (line,) = [line for line in logs if line["event"] == "http_request"]
    assert line["job_id"] == "j-9"


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"])
async def test_the_api_documents_have_their_own_route(client: httpx.AsyncClient, path: str) -> None:
    before, unmatched = requests("GET", path, 200), requests("GET", "unmatched", 200)
    with capture_logs() as logs:
        assert (await client.get(path)).status_code == 200
    assert requests("GET", path, 200) == before + 1
    assert requests("GET", "unmatched", 200) == unmatched
    assert [line["route"] for line in logs if line["event"] == "http_request"] == [path]


async def test_unmatched_is_a_404_without_a_route(client: httpx.AsyncClient) -> None:
    before = requests("GET", "unmatched", 404)
    assert (await client.get("/api/v1/nowhere/42")).status_code == 404
    assert (await client.get("/openapi.json/x")).status_code == 404
    assert requests("GET", "unmatched", 404) == before + 2


async def test_a_trailing_slash_redirect_is_labelled_by_the_route_it_leads_to(client: httpx.AsyncClient) -> None:
    before, unmatched = requests("GET", "/api/v1/workers/self", 307), requests("GET", "unmatched", 307)
    resp = await client.get("/api/v1/workers/self/")
    assert resp.status_code == 307
    assert resp.headers["location"] == "http://t/api/v1/workers/self"
    assert requests("GET", "/api/v1/workers/self", 307) == before + 1
    assert requests("GET", "unmatched", 307) == unmatched
