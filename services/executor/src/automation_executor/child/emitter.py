"""Writing protocol lines to the executor.

Every log line passes the execution's :class:`~automation_executor.domain.redact.Redactor` before it is
cut to the line cap, so a secret value the child was given never reaches the log, not even in part.
Writes are serialised with a lock: a python step's handler thread logs while the event loop writes too.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from pydantic import BaseModel

from automation_executor.domain.lines import cut_line
from automation_executor.domain.protocol import LogMessage, LogStream
from automation_executor.domain.redact import Redactor


class Emitter:
    """Writes JSON lines to the protocol file descriptor (the child's original stdout)."""

    def __init__(self, fd: int, max_line_bytes: int = 8192) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.max_line_bytes = max_line_bytes
        self.redactor = Redactor()

    def send(self, message: BaseModel) -> None:
        """Write one message; a vanished executor ends the child (BrokenPipeError)."""
        data = memoryview(message.model_dump_json().encode() + b"\n")
        with self._lock:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]

    def log(self, stream: LogStream, step: str | None, text: str) -> None:
        """One log line (secrets redacted, then cut to the line cap)."""
        text = cut_line(self.redactor.text(text), self.max_line_bytes)
        self.send(LogMessage(ts=datetime.now(UTC), stream=stream, step=step, text=text))

    @property
    def split_bytes(self) -> int:
        """Line length to split output at before redaction: the cap plus room for the longest secret."""
        return self.max_line_bytes + 4 * self.redactor.longest
