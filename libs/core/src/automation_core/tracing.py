"""OpenTelemetry set-up and W3C trace-context propagation through AMQP headers.

HTTP server spans come from FastAPI's native instrumentation on the provider installed here (see
:mod:`automation_core.http`); the messaging spans from ``automation_messaging``.

Tracing is always on in-process (so log lines carry trace ids); spans are exported over OTLP/HTTP
(protobuf, to ``<AUTOMATION_OTLP_ENDPOINT>/v1/traces``) only when ``AUTOMATION_OTLP_ENDPOINT`` is set,
through a ``BatchSpanProcessor`` that the standard ``OTEL_BSP_*`` variables tune (e.g.
``OTEL_BSP_SCHEDULE_DELAY`` in milliseconds) and the standard ``OTEL_EXPORTER_OTLP_*`` variables
configure further (headers, compression, certificates). The resource carries ``service.name`` and
``service.version``.

The messaging spans (one per message consumed, one per publish) go through :func:`start_span`. While
no span processor is installed (no exporter, nothing added), nobody could ever see a recorded span, so
:func:`start_span` records none: it makes current the context a recorded span would have had (the
parent's trace id or a new one, a new span id, the flags and trace state of the provider's sampler).
Log lines carry the same trace ids and published messages the same ``traceparent`` as with a
recorded span, for a quarter of its CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision

from automation_core import __version__

_provider: TracerProvider | None = None
_recording = False
"""Whether the provider has a span processor (an exporter or more): a recorded span can go somewhere."""


def setup_tracing(service: str, otlp_endpoint: str | None, *extra: SpanProcessor) -> TracerProvider:
    """Install a tracer provider for this process once; later calls add processors only."""
    global _provider, _recording  # noqa: PLW0603 - one provider per process, as OpenTelemetry requires
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": __version__}))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            _recording = True
        trace.set_tracer_provider(_provider)
    for processor in extra:
        _provider.add_span_processor(processor)
        _recording = True
    return _provider


@contextlib.contextmanager
def start_span(
    tracer: trace.Tracer,
    name: str,
    *,
    context: context_api.Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """``tracer.start_as_current_span`` when spans are recorded (the provider has a span processor: an
    exporter or more); otherwise the context alone.

    Without a span processor the span made current is a non-recording one with the identity the SDK
    would have given a recorded span: the trace id of the parent (``context``'s, else the current span)
    or a new one, a new span id, and the flags and trace state the provider's sampler decides
    (``OTEL_TRACES_SAMPLER``; by default the parent's, sampled for a new trace). Nothing is recorded.
    """
    provider = _provider
    if _recording or provider is None:
        with tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes) as span:
            yield span
        return
    parent = trace.get_current_span(context).get_span_context()
    ids = provider.id_generator
    trace_id = parent.trace_id if parent.is_valid else ids.generate_trace_id()
    sampled = provider.sampler.should_sample(context, trace_id, name, kind, attributes)
    flags = trace.TraceFlags.SAMPLED if sampled.decision is Decision.RECORD_AND_SAMPLE else trace.TraceFlags.DEFAULT
    if parent.trace_flags.random_trace_id if parent.is_valid else ids.is_trace_id_random():
        flags |= trace.TraceFlags.RANDOM_TRACE_ID
    own = trace.SpanContext(trace_id, ids.generate_span_id(), False, trace.TraceFlags(flags), sampled.trace_state)
    token = context_api.attach(trace.set_span_in_context(trace.NonRecordingSpan(own), context))
    try:
        yield trace.get_current_span()
    finally:
        context_api.detach(token)


def get_tracer(name: str) -> trace.Tracer:
    """A tracer from the process provider."""
    return trace.get_tracer(name)


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write ``traceparent``/``tracestate`` of the current context into AMQP headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.update(carrier)
    return headers


def extract_context(headers: Mapping[str, Any] | None) -> context_api.Context:
    """The remote context carried in AMQP headers (empty context when absent)."""
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    """Hex trace id of the active span, if any."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
