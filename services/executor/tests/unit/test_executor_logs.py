"""Log lines and batches: line cap, execution cap with a visible marker, batching by size and time."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from automation_contracts import CloudEvent, RunRequested, validate_event
from automation_executor import logstream
from automation_executor.domain.lines import LINE_CUT_MARKER, LineSplitter, cut_line
from automation_executor.domain.logs import SYSTEM_BUDGET_BYTES, TRUNCATED_MARKER, LogBuffer
from automation_executor.logstream import LogStreamer
from automation_executor.testing import run_request_data


def test_splitter_joins_chunks_and_cuts_long_lines() -> None:
    splitter = LineSplitter(16)
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == ["hello"]
    assert splitter.feed(b"ld\r\n" + b"x" * 40 + b"\nend") == ["world", cut_line("x" * 40, 16)]
    assert splitter.flush() == ["end"]
    assert splitter.flush() == []
    assert cut_line("x" * 40, 16) == "x" * 16  # too short for the marker
    cut = cut_line("x" * 400, 100)
    assert cut.endswith(LINE_CUT_MARKER)
    assert len(cut.encode()) == 100


def test_splitter_replaces_invalid_utf8_and_keeps_multibyte_cuts_valid() -> None:
    splitter = LineSplitter(64)
    assert splitter.feed(b"caf\xc3\xa9 \xff\n") == ["café \ufffd"]
    assert cut_line("é" * 100, 50).encode("utf-8")  # never a broken character


def test_buffer_caps_the_execution_with_one_marker() -> None:
    buffer = LogBuffer(max_bytes=100, max_line_bytes=1000)
    assert buffer.add("stdout", "s", "a" * 49)
    assert buffer.add("stdout", "s", "b" * 49)
    assert not buffer.add("stderr", "s", "c")
    assert not buffer.add("stdout", "s", "d")
    assert buffer.truncated
    assert buffer.dropped_lines == 2
    assert buffer.add("system", None, "attempt 1 failed")  # the executor's summary still gets through
    before = buffer.take(100)
    assert before is not None
    assert not before.truncated, "what came before the cut was not dropped"
    assert [(e.stream, e.text) for e in before.entries] == [("stdout", "a" * 49), ("stdout", "b" * 49)]
    after = buffer.take(100)
    assert after is not None
    assert after.truncated
    texts = [(e.stream, e.text) for e in after.entries]
    assert texts[0][0] == "system"
    assert texts[0][1].startswith(TRUNCATED_MARKER)
    assert texts[1] == ("system", "attempt 1 failed")
    assert buffer.take(100) is None


def test_only_batches_from_the_cut_on_are_flagged_truncated() -> None:
    """Lines still queued when the cap is hit (the publisher behind the reader) are not marked truncated."""
    buffer = LogBuffer(max_bytes=1000, max_line_bytes=1000)
    for i in range(250):  # 10 bytes a line: the cap falls at line 100, while nothing was taken yet
        buffer.add("stdout", "s", f"line {i:04d}")
    buffer.add("system", "s", "step s succeeded")
    batches = []
    while (batch := buffer.take(30)) is not None:
        batches.append(batch)
    flags = [batch.truncated for batch in batches]
    assert flags == [False] * 4 + [True], "a batch ends at the cut, and only what follows it is flagged"
    kept = [entry.text for batch in batches[:4] for entry in batch.entries]
    assert kept == [f"line {i:04d}" for i in range(100)]
    assert batches[4].entries[0].text.startswith(TRUNCATED_MARKER)
    assert [entry.text for entry in batches[4].entries[1:]] == ["step s succeeded"]
    buffer.add("system", None, "attempt 1 succeeded")
    later = buffer.take(30)
    assert later is not None
    assert later.truncated, "every batch after the cut says so"


def test_buffer_cuts_lines_and_bounds_system_lines() -> None:
    buffer = LogBuffer(max_bytes=10_000, max_line_bytes=20)
    buffer.add("stdout", None, "z" * 100)
    batch = buffer.take(10)
    assert batch is not None
    assert len(batch.entries[0].text.encode()) <= 20
    assert not batch.truncated
    roomy = LogBuffer(max_bytes=10_000, max_line_bytes=10_000)
    accepted = sum(roomy.add("system", None, "s" * 999) for _ in range(SYSTEM_BUDGET_BYTES // 1000 + 10))
    assert accepted == SYSTEM_BUDGET_BYTES // 1000
    assert not roomy.truncated


def test_take_returns_oldest_first_in_bounded_batches() -> None:
    buffer = LogBuffer(max_bytes=10_000, max_line_bytes=100)
    for i in range(250):
        buffer.add("stdout", "s", str(i))
    sizes = []
    while (batch := buffer.take(100)) is not None:
        sizes.append(len(batch.entries))
    assert sizes == [100, 100, 50]


class FakePublisher:
    """Records what would be published; fails on demand."""

    def __init__(self) -> None:
        self.events: list[tuple[CloudEvent, str]] = []
        self.fail_next = 0

    async def publish(self, event: CloudEvent, *, exchange: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker down")
        self.events.append((event, exchange))


def _request() -> RunRequested:
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}])
    return RunRequested.model_validate(json.loads(json.dumps(data)))


def _streamer(publisher: FakePublisher, **kwargs: float) -> LogStreamer:
    options: dict[str, float] = {
        "max_bytes": 1_000_000,
        "max_line_bytes": 8192,
        "batch_seconds": 0.05,
        "batch_entries": 100,
    }
    options.update(kwargs)
    return LogStreamer(
        publisher,
        _request(),
        max_bytes=int(options["max_bytes"]),
        max_line_bytes=int(options["max_line_bytes"]),
        batch_seconds=options["batch_seconds"],
        batch_entries=int(options["batch_entries"]),
    )


async def test_streamer_publishes_as_soon_as_a_batch_is_full() -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=30) as logs:
        for i in range(230):
            logs.add("stdout", "s", f"line {i}")
        for _ in range(200):
            if len(publisher.events) >= 3:
                break
            await asyncio.sleep(0.01)
        assert [len(e.data["entries"]) for e, _ in publisher.events] == [100, 100, 30]
        logs.add("stdout", "s", "last")  # not a full batch: waits for the interval, or the close
    sizes = [len(e.data["entries"]) for e, _ in publisher.events]
    assert sizes == [100, 100, 30, 1]
    assert [e.data["seq"] for e, _ in publisher.events] == [0, 1, 2, 3]
    texts = [entry["text"] for e, _ in publisher.events for entry in e.data["entries"]]
    assert texts == [f"line {i}" for i in range(230)] + ["last"]
    for event, exchange in publisher.events:
        assert exchange == "automation.events"
        assert event.type == "execution.log"
        validate_event(event)


async def test_system_lines_alone_wait_for_output_or_a_second_then_go_in_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=0.02) as logs:
        logs.add("system", None, "attempt 1 started on w")
        logs.add("system", "s", "step s (shell) started")
        await asyncio.sleep(0.1)  # five intervals: the system lines alone do not leave
        assert publisher.events == []
        logs.add("stdout", "s", "hello")  # output takes them along at the next interval
        for _ in range(100):
            if publisher.events:
                break
            await asyncio.sleep(0.01)
        [(batch, _)] = publisher.events
        assert [e["text"] for e in batch.data["entries"]] == [
            "attempt 1 started on w",
            "step s (shell) started",
            "hello",
        ]
        monkeypatch.setattr(logstream, "SYSTEM_ONLY_DELAY_SECONDS", 0.05)
        logs.add("system", "s", "step s succeeded")
        for _ in range(100):  # alone, they still leave once they waited long enough
            if len(publisher.events) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e["text"] for e in publisher.events[1][0].data["entries"]] == ["step s succeeded"]
        logs.add("system", None, "attempt 1 succeeded after 0.20s")
    assert [e.data["seq"] for e, _ in publisher.events] == [0, 1, 2], "the close publishes what is left"


async def test_streamer_flushes_small_batches_after_the_interval() -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=0.05) as logs:
        logs.add("stdout", "s", "one", datetime.now(UTC))
        for _ in range(100):
            if publisher.events:
                break
            await asyncio.sleep(0.01)
        assert len(publisher.events) == 1
    assert publisher.events[0][0].data["entries"][0]["text"] == "one"


async def test_streamer_seq_starts_where_told_and_a_batch_that_fails_goes_with_the_next() -> None:
    publisher = FakePublisher()
    publisher.fail_next = 1
    logs = LogStreamer(
        publisher,
        _request(),
        seq_start=1_000_000,
        max_bytes=1000,
        max_line_bytes=100,
        batch_seconds=30,
        batch_entries=1,
    )
    async with logs:
        logs.add("stdout", None, "held")
        for _ in range(100):  # the full batch tries to leave at once, and fails
            if publisher.fail_next == 0:
                break
            await asyncio.sleep(0.01)
        assert publisher.events == []
        logs.add("stdout", None, "next")
        for _ in range(100):
            if len(publisher.events) == 2:
                break
            await asyncio.sleep(0.01)
    assert [(e.data["seq"], e.data["entries"][0]["text"]) for e, _ in publisher.events] == [
        (1_000_000, "held"),
        (1_000_001, "next"),
    ], "in order, no gap"
    assert logs.next_seq == 1_000_002


async def test_batches_held_while_the_broker_is_down_are_retried_alone_or_go_with_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logstream, "HELD_RETRY_SECONDS", 0.05)
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=0.01, batch_entries=1) as logs:
        publisher.fail_next = 3
        logs.add("stdout", "s", "during the outage")
        for _ in range(200):  # no new output: retried every HELD_RETRY_SECONDS until it goes
            if publisher.events:
                break
            await asyncio.sleep(0.01)
        assert [e.data["entries"][0]["text"] for e, _ in publisher.events] == ["during the outage"]
        publisher.fail_next = 1_000
        logs.add("stdout", "s", "one")
        logs.add("stdout", "s", "two")
        await asyncio.sleep(0.05)
        rest = await logs.rest()
    assert [(e.data["seq"], e.data["entries"][0]["text"]) for e in rest] == [(1, "one"), (2, "two")]


@pytest.mark.parametrize("size", [10, 100])
async def test_streamer_marks_truncation_in_later_batches(size: int) -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, max_bytes=1024, batch_entries=size) as logs:
        for _ in range(100):
            logs.add("stdout", "s", "x" * 100)
    flags = [e.data["truncated"] for e, _ in publisher.events]
    assert flags[-1] is True
    texts = [entry["text"] for e, _ in publisher.events for entry in e.data["entries"]]
    assert sum(t.startswith(TRUNCATED_MARKER) for t in texts) == 1
    assert len(texts) < 100


async def test_rest_returns_what_is_left_as_events_and_publishes_nothing() -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=30, batch_entries=2) as logs:
        for text in ("one", "two"):
            logs.add("stdout", "s", text)
        for _ in range(100):  # the full batch leaves on its own
            if publisher.events:
                break
            await asyncio.sleep(0.01)
        logs.add("stdout", "s", "three")
        logs.add("system", None, "attempt 1 succeeded after 0.01s")  # a full batch again, but taken at once
        rest = await logs.rest()
    assert [[x["text"] for x in e.data["entries"]] for e, _ in publisher.events] == [["one", "two"]]
    assert [[x["text"] for x in e.data["entries"]] for e in rest] == [["three", "attempt 1 succeeded after 0.01s"]]
    assert [e.data["seq"] for e in rest] == [1], "the next seq; nothing left for the close to publish"
    assert len(publisher.events) == 1
    for event in rest:
        assert event.type == "execution.log"
        validate_event(event)


async def test_rest_of_a_run_without_lines_is_empty_and_the_interval_never_publishes_it() -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=0.01) as logs:
        logs.add("stdout", "s", "only")
        rest = await logs.rest()  # before the interval: the periodic task must not take it meanwhile
        assert await logs.rest() == []
    assert publisher.events == []
    assert [[x["text"] for x in e.data["entries"]] for e in rest] == [["only"]]


async def test_publish_events_publishes_the_rest_when_it_cannot_be_recorded() -> None:
    publisher = FakePublisher()
    async with _streamer(publisher, batch_seconds=30, batch_entries=1) as logs:
        for text in ("a", "b"):
            logs.add("stdout", "s", text)
        rest = await logs.rest()
        publisher.fail_next = 1
        await logs.publish_events(rest)  # the first fails: dropped and logged (a gap), the second goes
    assert [[x["text"] for x in e.data["entries"]] for e, _ in publisher.events] == [["b"]]
