"""Splitting process output into text lines of bounded length.

:class:`LineSplitter` turns byte chunks into lines no longer than a cap; a longer line is cut and
marked with :data:`LINE_CUT_MARKER`. Used by the child (for step output) and the executor (for the
child's own stderr).
"""

from __future__ import annotations

from automation_contracts.storable import storable_text

LINE_CUT_MARKER = " [line truncated]"


def cut_line(text: str, max_bytes: int) -> str:
    """``text`` shortened to at most ``max_bytes`` UTF-8 bytes (marked when cut), a NUL character as U+FFFD
    (a command may print one; the log's store, PostgreSQL, cannot keep it)."""
    text = storable_text(text)
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    marker = LINE_CUT_MARKER.encode()
    if max_bytes <= 2 * len(marker):  # too short to mark: just cut
        return encoded[:max_bytes].decode("utf-8", errors="ignore")
    return encoded[: max_bytes - len(marker)].decode("utf-8", errors="ignore") + LINE_CUT_MARKER


class LineSplitter:
    """Feeds on byte chunks and yields complete lines, each at most ``max_bytes`` long."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._partial = bytearray()
        self._cut = False  # the current line already passed the cap; drop the rest of it

    def feed(self, chunk: bytes) -> list[str]:
        """The lines completed by ``chunk`` (without their newlines)."""
        lines: list[str] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            self._append(piece)
            if end < 0:
                return lines
            lines.append(self._take())
            start = end + 1

    def flush(self) -> list[str]:
        """The last line when the output did not end with a newline."""
        if not self._partial and not self._cut:
            return []
        return [self._take()]

    def _append(self, piece: bytes) -> None:
        if self._cut:
            return
        room = self._max + 1 - len(self._partial)
        self._partial += piece[:room]
        if len(self._partial) > self._max:
            self._cut = True

    def _take(self) -> str:
        text = bytes(self._partial).removesuffix(b"\r").decode("utf-8", errors="replace")
        cut, self._cut = self._cut, False
        self._partial.clear()
        return cut_line(text, self._max) if cut else text
