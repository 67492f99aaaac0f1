"""Server-sent events framing (the ``text/event-stream`` format of the HTML standard) for followed logs.

A followed log (``GET /api/v1/executions/{id}/logs?follow=true``) sends:

- ``event: log`` with ``id: <attempt>:<seq>`` and the batch as JSON ``{"attempt", "seq", "truncated",
  "entries": [{"ts", "stream", "step", "text"}]}``, one frame per stored ``execution.log`` batch;
- ``event: status`` with ``{"status", "attempt", "started_at", "finished_at", "exit_code", "error",
  "cancel_requested_at"}`` first and whenever the status or attempt changes (no ``id``, so a client's
  last event id stays the last log batch it got);
- ``event: end`` with ``{"status"}`` once the execution is finished, after its last batches;
- ``: keepalive`` comment frames when nothing else was sent for a while.

A client that reconnects sends ``Last-Event-ID: <attempt>:<seq>`` and gets only the batches after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from automation_core.errors import InvalidInput

_LAST_EVENT_ID = re.compile(r"^\s*(\d{1,10}):(\d{1,10})\s*$")
_MAX_NUMBER = 2**31 - 1
"""The largest attempt or seq stored (an integer column); a lost attempt's last batch has this seq."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True, order=True)
class LogPosition:
    """A log batch's place in the log: ``(attempt, seq)``; the stream resumes after it."""

    attempt: int
    seq: int

    def event_id(self) -> str:
        return f"{self.attempt}:{self.seq}"


START = LogPosition(0, -1)
"""Before every batch (attempts start at 1, sequence numbers at 0)."""


def parse_last_event_id(value: str | None) -> LogPosition | None:
    """The position a ``Last-Event-ID`` header names; None when absent or empty; 422 when malformed."""
    if value is None or not value.strip():
        return None
    match = _LAST_EVENT_ID.match(value)
    if match is None or max(int(match.group(1)), int(match.group(2))) > _MAX_NUMBER:
        raise InvalidInput(
            "Last-Event-ID: expected <attempt>:<seq>, the id of an event this stream sent", field="Last-Event-ID"
        )
    return LogPosition(int(match.group(1)), int(match.group(2)))


def frame(data: Any, *, event: str | None = None, event_id: str | None = None) -> str:
    """One event: ``data`` as compact JSON (or text as it is), split into ``data:`` lines."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    lines: list[str] = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return "\n".join(lines) + "\n\n"


def comment(text: str = "keepalive") -> str:
    """A comment frame: ignored by clients, keeps proxies from closing an idle stream."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)) + "\n"
