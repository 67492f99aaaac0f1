"""The executor's HTTP metrics name its routes by their full template: its API router carries ``/api/v1``
and includes prefix-less routers, which the shared middleware must not cut short."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from automation_executor.app import create_app
from automation_executor.settings import ExecutorSettings


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ExecutorSettings(env="development"))  # no lifespan: the requests below stop at the auth
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


def requests(route: str, status: int) -> float:
    labels = {"service": "executor", "method": "GET", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("automation_http_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("path", "status", "route"),
    [
        ("/api/v1/workers/self", 401, "/api/v1/workers/self"),
        ("/api/v1/attempts", 401, "/api/v1/attempts"),
        ("/openapi.json", 200, "/openapi.json"),
        ("/docs", 200, "/docs"),
        ("/api/v1/nothing-here", 404, "unmatched"),
    ],
)
async def test_requests_are_counted_by_their_full_route_template(
    client: httpx.AsyncClient, path: str, status: int, route: str
) -> None:
    before = requests(route, status)
    assert (await client.get(path)).status_code == status
    assert requests(route, status) == before + 1
