"""``start_span``: a recorded span when a span processor is installed; otherwise only the context the
SDK would have given a recorded span (trace id, flags and trace state as its sampler decides, a new
span id), made current and carried on by ``traceparent``."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from automation_core import tracing
from automation_core.tracing import current_trace_id, extract_context, get_tracer, inject_headers, start_span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PARENTS = {
    "sampled parent": f"00-{TRACE_ID}-{PARENT_ID}-01",
    "unsampled parent": f"00-{TRACE_ID}-{PARENT_ID}-00",
    "parent with a random trace id": f"00-{TRACE_ID}-{PARENT_ID}-03",
    "no parent": None,
}


class UnusableTracer(trace.Tracer):
    """A tracer the context-only path must not touch."""

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise AssertionError("a span was started although nothing records spans")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a span was started although nothing records spans")


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    tracing.setup_tracing("unit", None)


@pytest.fixture
def not_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_recording", False)


def context_of(traceparent: str | None) -> Context:
    headers = {"traceparent": traceparent, "tracestate": "vendor=x"} if traceparent else {}
    return extract_context(headers)


def sent_under(tracer: trace.Tracer, traceparent: str | None) -> dict[str, str]:
    """The trace headers a message published inside the span would carry, split into their parts."""
    with start_span(tracer, "q process", context=context_of(traceparent), kind=SpanKind.CONSUMER) as span:
        headers = inject_headers({})
        recorded = span.is_recording()
        trace_id = current_trace_id()
    version, sent_trace_id, span_id, flags = headers["traceparent"].split("-")
    assert sent_trace_id == trace_id, "log lines and messages carry the same trace id"
    return {
        "version": version,
        "trace_id": sent_trace_id,
        "span_id": span_id,
        "flags": flags,
        "tracestate": headers.get("tracestate", ""),
        "recorded": str(recorded),
    }


@pytest.mark.parametrize("traceparent", PARENTS.values(), ids=PARENTS.keys())
def test_without_a_processor_messages_carry_what_a_recorded_span_would_give_them(
    traceparent: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_recording", True)
    sdk = sent_under(get_tracer("unit"), traceparent)
    monkeypatch.setattr(tracing, "_recording", False)
    light = sent_under(UnusableTracer(), traceparent)

    assert light.pop("recorded") == "False"
    assert sdk.pop("recorded") == str(traceparent is None or not traceparent.endswith("-00"))
    assert light["span_id"] not in (sdk["span_id"], PARENT_ID, "0" * 16), "a span id of its own"
    if traceparent is None:
        assert light["trace_id"] != sdk["trace_id"], "each new trace has an id of its own"
        assert light["trace_id"] != "0" * 32
        light.pop("trace_id"), sdk.pop("trace_id")
    else:
        assert light["trace_id"] == TRACE_ID
    light.pop("span_id"), sdk.pop("span_id")
    assert light == sdk
    assert current_trace_id() is None, "the context before the span is current again"


@pytest.mark.usefixtures("not_recording")
def test_without_a_processor_the_current_span_is_the_parent() -> None:
    tracer = UnusableTracer()
    with (
        start_span(tracer, "outer", context=context_of(PARENTS["sampled parent"])) as outer,
        start_span(tracer, "inner") as inner,
    ):
        outer_context, inner_context = outer.get_span_context(), inner.get_span_context()
    assert inner_context.trace_id == outer_context.trace_id == int(TRACE_ID, 16)
    assert inner_context.span_id != outer_context.span_id


def test_with_a_processor_the_span_is_recorded_with_its_parent() -> None:
    memory = InMemorySpanExporter()
    tracing.setup_tracing("unit", None, SimpleSpanProcessor(memory))
    assert tracing._recording
    attributes = {"messaging.system": "rabbitmq"}
    context = context_of(PARENTS["sampled parent"])
    with start_span(get_tracer("unit"), "q process", context=context, kind=SpanKind.CONSUMER, attributes=attributes):
        headers = inject_headers({})
    [span] = [s for s in memory.get_finished_spans() if s.name == "q process"]
    assert span.kind == SpanKind.CONSUMER
    assert span.attributes == attributes
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    assert trace.get_current_span().get_span_context().is_valid is False
