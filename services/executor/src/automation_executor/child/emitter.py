"""Writing protocol lines to the executor."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from pydantic import BaseModel

from automation_executor.domain.lines import cut_line
from automation_executor.domain.protocol import LogMessage, LogStream


class Emitter:
    """Writes JSON lines to the protocol file descriptor (the child's original stdout)."""

    def __init__(self, fd: int, max_line_bytes: int = 8192) -> None:
        self._fd = fd
        self.max_line_bytes = max_line_bytes

    def send(self, message: BaseModel) -> None:
        """Write one message; a vanished executor ends the child (BrokenPipeError)."""
        data = memoryview(message.model_dump_json().encode() + b"\n")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def log(self, stream: LogStream, step: str | None, text: str) -> None:
        """One log line (cut to the line cap)."""
        self.send(LogMessage(ts=datetime.now(UTC), stream=stream, step=step, text=cut_line(text, self.max_line_bytes)))
