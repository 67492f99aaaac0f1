"""OpenTelemetry set-up and W3C trace-context propagation through AMQP headers.

HTTP server spans come from FastAPI's native instrumentation on the provider installed here (see
:mod:`automation_core.http`); the messaging spans from ``automation_messaging``.

Tracing is always on in-process (so log lines carry trace ids); spans are exported over OTLP/HTTP
(protobuf, to ``<AUTOMATION_OTLP_ENDPOINT>/v1/traces``) only when ``AUTOMATION_OTLP_ENDPOINT`` is set,
through a ``BatchSpanProcessor`` that the standard ``OTEL_BSP_*`` variables tune (e.g.
``OTEL_BSP_SCHEDULE_DELAY`` in milliseconds) and the standard ``OTEL_EXPORTER_OTLP_*`` variables
configure further (headers, compression, certificates). The resource carries ``service.name`` and
``service.version``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from automation_core import __version__

_provider: TracerProvider | None = None


def setup_tracing(service: str, otlp_endpoint: str | None, *extra: SpanProcessor) -> TracerProvider:
    """Install a tracer provider for this process once; later calls add processors only."""
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry requires
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": __version__}))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(_provider)
    for processor in extra:
        _provider.add_span_processor(processor)
    return _provider


def get_tracer(name: str) -> trace.Tracer:
    """A tracer from the process provider."""
    return trace.get_tracer(name)


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write ``traceparent``/``tracestate`` of the current context into AMQP headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.update(carrier)
    return headers


def extract_context(headers: Mapping[str, Any] | None) -> context.Context:
    """The remote context carried in AMQP headers (empty context when absent)."""
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    """Hex trace id of the active span, if any."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
