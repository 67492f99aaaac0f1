"""The text form of an execution's log.

Every entry becomes one line ``<ts> <stream> [<step>] <text>`` (``[-]`` for lines outside any step),
batches ordered by attempt then ``seq``, with ``--- attempt N ---`` before each attempt's entries and
``--- output truncated ---`` where the executor began to drop output: before the first batch of an
attempt flagged ``truncated`` (every later batch of that attempt is flagged too, and gets no marker of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LogBatch:
    """One stored ``execution.log`` batch."""

    attempt: int
    seq: int
    entries: Sequence[Mapping[str, Any]]
    truncated: bool = False


def format_entry(entry: Mapping[str, Any]) -> str:
    """One entry as a line (without its newline)."""
    step = entry.get("step") or "-"
    return f"{entry.get('ts', '')} {entry.get('stream', '')} [{step}] {entry.get('text', '')}"


def render_log(batches: Iterable[LogBatch]) -> str:
    """The whole log as text, each line ending with a newline; empty when there is nothing yet."""
    lines: list[str] = []
    attempt: int | None = None
    truncated = False
    for batch in sorted(batches, key=lambda b: (b.attempt, b.seq)):
        if batch.attempt != attempt:
            attempt, truncated = batch.attempt, False
            lines.append(f"--- attempt {attempt} ---")
        if batch.truncated and not truncated:
            truncated = True
            lines.append("--- output truncated ---")
        lines.extend(format_entry(entry) for entry in batch.entries)
    return "".join(line + "\n" for line in lines)
