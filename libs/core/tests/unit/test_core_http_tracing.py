"""HTTP server spans (FastAPI's native telemetry as create_service_app configures it): one SERVER span per
request, named by route template, parented by the caller's ``traceparent``, current in the handler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.metrics import render_metrics
from automation_core.settings import ServiceSettings
from automation_core.tracing import inject_headers, setup_tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    setup_tracing("unit", None, SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
def captured() -> dict[str, str]:
    """The trace headers an outbox row written by the handler would carry."""
    return {}


@pytest.fixture
async def client(captured: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(service_name="unit", env="development")
    app = create_service_app(settings, title="t", description="d", lifespan=no_lifespan, readiness=Readiness())

    @app.post("/api/v1/jobs/{job_id}/execute", status_code=202)
    async def execute(job_id: str) -> dict[str, str]:
        captured.update(inject_headers({}))
        return {"job_id": job_id}

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    workers = APIRouter(tags=["workers"])  # nested as the executor's: /api/v1 on the including router

    @workers.get("/workers/{worker_id}")
    async def worker(worker_id: str) -> dict[str, str]:
        return {"id": worker_id}

    api = APIRouter(prefix="/api/v1")
    api.include_router(workers)
    app.include_router(api)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def only_server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert len(found) == 1, [span.name for span in found]
    return found[0]


async def test_request_span_continues_the_callers_trace_and_is_current_in_the_handler(
    client: httpx.AsyncClient, spans: InMemorySpanExporter, captured: dict[str, str]
) -> None:
    resp = await client.post(
        "/api/v1/jobs/j-1/execute", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, json={}
    )
    assert resp.status_code == 202
    span = only_server_span(spans)
    assert span.name == "POST /api/v1/jobs/{job_id}/execute"
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/api/v1/jobs/{job_id}/execute",
        "http.response.status_code": 202,
        "url.path": "/api/v1/jobs/j-1/execute",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "t",
        "server.port": 80,
    }
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert captured["traceparent"] == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"


async def test_request_without_traceparent_starts_a_trace(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await client.post("/api/v1/jobs/j-2/execute", json={})).status_code == 202
    span = only_server_span(spans)
    assert span.parent is None
    assert span.context.trace_id != int(TRACE_ID, 16)


async def test_server_error_marks_the_span_failed(client: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    assert (await client.get("/api/v1/boom")).status_code == 500
    span = only_server_span(spans)
    assert span.name == "GET /api/v1/boom"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert (span.attributes or {})["error.type"] == "RuntimeError"


async def test_a_nested_routers_span_and_metrics_name_the_full_template(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await client.get("/api/v1/workers/w-1")).status_code == 200
    span = only_server_span(spans)
    assert span.name == "GET /api/v1/workers/{worker_id}"
    assert (span.attributes or {})["http.route"] == "/api/v1/workers/{worker_id}"
    payload, _ = render_metrics()
    assert b'method="GET",route="/api/v1/workers/{worker_id}",service="unit",status="200"' in payload


async def test_unmatched_path_is_named_by_method_only(client: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    assert (await client.get("/nowhere/123")).status_code == 404
    span = only_server_span(spans)
    assert span.name == "GET"
    assert "http.route" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the caller's error, not the server's


async def test_health_and_metrics_are_counted_but_not_traced(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        await client.get(path)
    assert spans.get_finished_spans() == ()
    payload, _ = render_metrics()
    assert b'automation_http_requests_total{method="GET",route="/healthz",service="unit",status="200"}' in payload


def test_no_span_is_active_outside_a_request() -> None:
    assert not trace.get_current_span().get_span_context().is_valid
