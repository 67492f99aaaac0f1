"""The child's blocking path: running the step coroutines without an event loop, and what it shares.

A job whose steps all have a blocking runner (``shell``, ``python``) runs without asyncio: its runners
and the bridge do their waiting themselves (a selector, a thread's future), so the orchestration
coroutines never wait for a loop and :func:`drive` runs them to the end in one ``send``.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from automation_executor.domain.protocol import StepMessage
from automation_executor.domain.steps import ParsedStep

T = TypeVar("T")


class Terminated(BaseException):
    """SIGTERM on the blocking path: the running step stops its work and the child exits 143."""


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits for an event loop to its end, in one step."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a step of the blocking path waited for an event loop")


def timed_out(step: ParsedStep) -> StepMessage:
    """The result of a step stopped at its own ``timeout_seconds``."""
    return StepMessage(name=step.name, status="timed_out", error=f"timed out after {step.timeout_seconds}s")


class LineReader:
    """Lines from a descriptor, read with blocking ``os.read`` (the spec, then the bridge's replies)."""

    def __init__(self, fd: int, *, limit: int) -> None:
        self.fd = fd
        self._limit = limit
        self._buffer = bytearray()

    def readline(self) -> bytes:
        """The next line with its newline; what is left (maybe empty) at the end of the stream.

        Raises ValueError when a line is longer than the limit.
        """
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > self._limit:
                raise ValueError(f"a line longer than {self._limit} bytes")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                line, self._buffer = bytes(self._buffer), bytearray()
                return line
            self._buffer += chunk
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def take_buffered(self) -> bytes:
        """What was read past the last line returned (handed on to an asyncio reader)."""
        data, self._buffer = bytes(self._buffer), bytearray()
        return data
