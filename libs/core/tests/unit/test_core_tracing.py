"""``start_span``: a recorded span when a span processor is installed, otherwise only the context a
recorded span would have had (trace id, flags and state of the parent, a new span id)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from automation_core import tracing
from automation_core.tracing import current_trace_id, extract_context, get_tracer, inject_headers, start_span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class UnusableTracer:
    """A tracer the fast path must not touch."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the SDK tracer was used ({name}) although nothing records spans")


@pytest.fixture
def not_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_recording", False)


def parent(flags: str = "01", state: str | None = None) -> Any:
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-{flags}"}
    if state is not None:
        headers["tracestate"] = state
    return extract_context(headers)


@pytest.mark.usefixtures("not_recording")
@pytest.mark.parametrize("flags", ["01", "00"])
def test_without_a_processor_the_parents_trace_flows_on_under_a_new_span_id(flags: str) -> None:
    with start_span(UnusableTracer(), "q process", context=parent(flags, "vendor=x"), kind=SpanKind.CONSUMER) as span:
        assert not span.is_recording()
        assert current_trace_id() == TRACE_ID
        headers = inject_headers({})
    version, trace_id, span_id, sent_flags = headers["traceparent"].split("-")
    assert (version, trace_id, sent_flags) == ("00", TRACE_ID, flags)
    assert span_id not in (PARENT_ID, "0" * 16)
    assert headers["tracestate"] == "vendor=x"
    assert current_trace_id() is None, "the context before the span is current again"


@pytest.mark.usefixtures("not_recording")
def test_without_a_processor_or_a_parent_a_new_sampled_trace_starts() -> None:
    seen = set()
    for _ in range(3):
        with start_span(UnusableTracer(), "x publish", kind=SpanKind.PRODUCER):
            _, trace_id, span_id, flags = inject_headers({})["traceparent"].split("-")
        assert flags == "01"
        assert trace_id != "0" * 32
        assert span_id != "0" * 16
        seen.add(trace_id)
    assert len(seen) == 3, "each root span starts a trace of its own"


@pytest.mark.usefixtures("not_recording")
def test_without_a_processor_the_current_span_is_the_parent() -> None:
    tracer = UnusableTracer()
    with start_span(tracer, "outer", context=parent()) as outer, start_span(tracer, "inner") as inner:
        outer_context, inner_context = outer.get_span_context(), inner.get_span_context()
    assert inner_context.trace_id == outer_context.trace_id == int(TRACE_ID, 16)
    assert inner_context.span_id != outer_context.span_id


def test_with_a_processor_the_span_is_recorded_with_its_parent() -> None:
    memory = InMemorySpanExporter()
    tracing.setup_tracing("unit", None, SimpleSpanProcessor(memory))
    assert tracing.recording()
    attributes = {"messaging.system": "rabbitmq"}
    with start_span(get_tracer("unit"), "q process", context=parent(), kind=SpanKind.CONSUMER, attributes=attributes):
        headers = inject_headers({})
    [span] = [s for s in memory.get_finished_spans() if s.name == "q process"]
    assert span.kind == SpanKind.CONSUMER
    assert span.attributes == attributes
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    assert trace.get_current_span().get_span_context().is_valid is False
