"""The per-attempt log buffer.

:class:`LogBuffer` holds entries until they are published in batches; once the step output of
an attempt passes its byte budget, further output is dropped behind one visible ``[log truncated]``
system entry. That entry starts a batch, and it and every later batch say ``truncated: true``; lines
queued before the cut go out in unflagged batches, however long they waited. The executor's own
(``system``) lines have a small budget of their own, so the summary of how a run ended still gets
through after truncation.

The budget is per attempt (per run of an attempt: one buffer per :class:`~automation_executor.logstream.LogStreamer`):
a retry's output is never dropped because an earlier attempt used the budget up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from automation_contracts import LogEntry, LogStream
from automation_executor.domain.lines import cut_line

TRUNCATED_MARKER = "[log truncated]"
SYSTEM_BUDGET_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """Entries to publish as one ``execution.log`` message."""

    entries: list[LogEntry]
    truncated: bool


class LogBuffer:
    """Pending log entries of one attempt, with the per-line and per-attempt caps applied."""

    def __init__(self, *, max_bytes: int, max_line_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._max_line = max_line_bytes
        self._used = 0
        self._system_used = 0
        self._pending: list[LogEntry] = []
        self.truncated = False
        self.dropped_lines = 0
        self._before_cut: int | None = None
        """How many pending entries came before the ``[log truncated]`` entry (None: no cut yet)."""

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> bool:
        """Queue one line; False when it was dropped by the execution's cap."""
        text = cut_line(text, self._max_line)
        size = len(text.encode("utf-8", errors="replace")) + 1
        entry = LogEntry(ts=ts or datetime.now(UTC), stream=stream, step=step, text=text)
        if stream == "system":
            if self._system_used + size > SYSTEM_BUDGET_BYTES:
                self.dropped_lines += 1
                return False
            self._system_used += size
            self._pending.append(entry)
            return True
        if self.truncated or self._used + size > self._max_bytes:
            if not self.truncated:
                self.truncated = True
                self._before_cut = len(self._pending)
                self._pending.append(
                    LogEntry(
                        ts=entry.ts,
                        stream="system",
                        step=step,
                        text=f"{TRUNCATED_MARKER} output beyond {self._max_bytes} bytes is dropped",
                    )
                )
            self.dropped_lines += 1
            return False
        self._used += size
        self._pending.append(entry)
        return True

    def take(self, max_entries: int) -> Batch | None:
        """The oldest pending entries (at most ``max_entries``), or None when nothing is pending.

        A batch never spans the cut: entries queued before the ``[log truncated]`` entry leave in
        batches with ``truncated`` false, and that entry starts the first batch flagged ``truncated``.
        """
        if not self._pending:
            return None
        before = len(self._pending) if self._before_cut is None else self._before_cut
        count = min(max_entries, before) if before else max_entries
        entries, self._pending = self._pending[:count], self._pending[count:]
        if self._before_cut is not None and before:
            self._before_cut = before - len(entries)
        return Batch(entries=entries, truncated=not before)
