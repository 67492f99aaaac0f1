"""Streaming an attempt's output as ``execution.log`` batches.

While a run goes on, logs are published straight to ``automation.events`` with the broker publisher,
not through the outbox: they are high-volume, and losing some lines of a run that a crash interrupts
is acceptable. A batch leaves every ``executor_log_batch_seconds`` (200 ms) or as soon as
``executor_log_batch_entries`` (100) lines are waiting; ``seq`` counts the batches of an attempt from
0. A batch that cannot be published (the broker connection is down) is kept, in order with those
after it, and tried again with the next flush; what is still unsent when the run ends goes with the
outcome (below). So a broker restart during a run delays its lines and loses none.

What is left when the run ends (for a short run, its whole log) is taken with :meth:`LogStreamer.rest`
and recorded with the outcome: its batches go into the outbox in the same statement as the outcome,
ahead of the outcome's own messages. So the end of a log is as durable as the outcome, normally
reaches consumers before it, and costs the run no publish of its own. If the outcome cannot be recorded
(another replica took the attempt over, or the run lost its lease), they are published directly as
before (:meth:`LogStreamer.publish_events`); a batch that fails then is dropped and logged, and leaves
a gap in ``seq``, so consumers can tell.

Lines of the executor's own (stream ``system``: "attempt 1 started", "limits: ...", "step x started")
do not make a batch leave on their own before :data:`SYSTEM_ONLY_DELAY_SECONDS`: they go with the
next step output, or at the end. A short run thus publishes one batch, not several, and a run with
no output still shows its progress within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from types import TracebackType
from typing import Protocol

from automation_contracts import CloudEvent, LogStream, RunRequested
from automation_core.logging import get_logger
from automation_executor.domain.logs import LogBuffer
from automation_executor.events import log_event
from automation_messaging.topology import EVENTS

log = get_logger(__name__)
SYSTEM_ONLY_DELAY_SECONDS = 1.0
"""How long lines of the ``system`` stream alone may wait for output to go with."""
HELD_RETRY_SECONDS = 1.0
"""How often batches that could not be published are tried again when no new output comes."""


class EventPublisher(Protocol):
    """What the streamer publishes with (:class:`automation_messaging.Publisher` in the service)."""

    async def publish(self, event: CloudEvent, *, exchange: str) -> None: ...


class LogSink(Protocol):
    """Where the runner sends log lines."""

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None: ...


class LogStreamer:
    """Buffers one attempt's log lines and publishes them in batches until closed."""

    def __init__(
        self,
        publisher: EventPublisher,
        request: RunRequested,
        *,
        seq_start: int = 0,
        max_bytes: int,
        max_line_bytes: int,
        batch_seconds: float,
        batch_entries: int,
    ) -> None:
        self._publisher = publisher
        self._request = request
        self._buffer = LogBuffer(max_bytes=max_bytes, max_line_bytes=max_line_bytes)
        self._batch_seconds = batch_seconds
        self._batch_entries = batch_entries
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.next_seq = seq_start
        self._output_waiting = False
        self._waiting_since: float | None = None
        self._unsent: list[CloudEvent] = []
        self._held_since: float | None = None

    @property
    def truncated(self) -> bool:
        return self._buffer.truncated

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        """Queue one line (never blocks; the caps of :class:`LogBuffer` apply)."""
        self._buffer.add(stream, step, text, ts)
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        if stream != "system":
            self._output_waiting = True
        if len(self._buffer) >= self._batch_entries:
            self._wake.set()

    def _due(self) -> bool:
        """Whether the periodic flush publishes now (see the module docstring)."""
        if self._output_waiting or len(self._buffer) >= self._batch_entries:
            return True
        if self._held_since is not None and time.monotonic() - self._held_since >= HELD_RETRY_SECONDS:
            return True
        since = self._waiting_since
        return since is not None and time.monotonic() - since >= SYSTEM_ONLY_DELAY_SECONDS

    async def __aenter__(self) -> LogStreamer:
        self._task = asyncio.create_task(self._run(), name=f"logs-{self._request.execution_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Publish what is left and stop."""
        await self._stop()
        await self.publish_events(self._take())

    async def rest(self) -> list[CloudEvent]:
        """Stop, and return what is left (batches that could not be published first) as ``execution.log``
        events instead of publishing them: the caller records them with the outcome, or publishes them
        with :meth:`publish_events` when it cannot."""
        await self._stop()
        return self._take()

    async def publish_events(self, events: list[CloudEvent]) -> None:
        """Publish events; a batch that fails is dropped and logged (a gap in ``seq``)."""
        for event in events:
            if not await self._publish([event]):
                continue
            data = event.data if isinstance(event.data, dict) else {}
            log.warning("log_batch_dropped", seq=data.get("seq"), entries=len(data.get("entries", ())))

    async def _publish(self, events: list[CloudEvent]) -> list[CloudEvent]:
        """Publish in order; from the first that fails on, the events are returned unsent."""
        for index, event in enumerate(events):
            try:
                await self._publisher.publish(event, exchange=EVENTS)
            except Exception as exc:  # noqa: BLE001 - a log batch that cannot leave must not fail the execution
                if self._held_since is None:  # once per outage, not at every try
                    log.warning("log_batch_publish_failed", batches=len(events) - index, error=repr(exc))
                self._held_since = time.monotonic()
                return events[index:]
        self._held_since = None
        return []

    async def _stop(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._batch_seconds)
            self._wake.clear()
            if self._closed:  # what is left is the closer's: published by close(), returned by rest()
                return
            if self._due():
                await self._flush()

    async def _flush(self) -> None:
        self._unsent = await self._publish(self._take())

    def _take(self) -> list[CloudEvent]:
        """The batches not published yet, then every waiting line as ``execution.log`` events of at
        most ``batch_entries`` lines, each numbered with the next ``seq``."""
        self._output_waiting, self._waiting_since = False, None
        events, self._unsent = self._unsent, []
        while (batch := self._buffer.take(self._batch_entries)) is not None:
            events.append(log_event(self._request, seq=self.next_seq, entries=batch.entries, truncated=batch.truncated))
            self.next_seq += 1
        return events
