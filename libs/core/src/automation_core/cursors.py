"""Opaque list cursors: unpadded base64url of a short text or a small JSON value.

Every listing's cursor is decoded here, so that whatever a client sends instead of a ``next_cursor``
fails the same way, with a :class:`ValueError` the listing turns into a 422 naming ``cursor``: text
too long to be a cursor, not base64url, not UTF-8, holding a NUL character (PostgreSQL's text refuses
it), JSON that does not parse or is nested deeper than a cursor ever is (Python's parser would
otherwise raise ``RecursionError``). What the decoded text or value means (an instant, a UUID, a
name) each listing checks itself; instants with :func:`automation_contracts.primitives.check_instant`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

MAX_CURSOR_CHARS = 4096
"""The longest cursor text taken (a cursor this platform issues is far shorter)."""
MAX_CURSOR_DEPTH = 4
"""The deepest nesting of a JSON cursor (the platform's are one flat array)."""


class CursorError(ValueError):
    """A cursor that is not one this platform issued; the message says why."""


def encode_cursor_text(text: str) -> str:
    """The opaque cursor of ``text``."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def encode_cursor_json(value: Any) -> str:
    """The opaque cursor of a small JSON value (compact, UTF-8)."""
    return encode_cursor_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def decode_cursor_text(cursor: str) -> str:
    """The text a cursor stands for; :class:`CursorError` when it is not one of ours."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError(f"is longer than {MAX_CURSOR_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CursorError("is not base64url") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CursorError("does not decode to UTF-8 text") from exc
    if "\x00" in text:
        raise CursorError("decodes to text with a NUL character")
    return text


def decode_cursor_json(cursor: str) -> Any:
    """The JSON value a cursor stands for; :class:`CursorError` when it is not one of ours."""
    text = decode_cursor_text(cursor)
    if _depth(text) > MAX_CURSOR_DEPTH:
        raise CursorError(f"decodes to JSON nested deeper than {MAX_CURSOR_DEPTH} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CursorError("does not decode to JSON") from exc
    if _holds_nul(value):  # escaped as \u0000
        raise CursorError("decodes to text with a NUL character")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


def _depth(text: str) -> int:
    """An upper bound of how deep ``text``'s JSON nests (brackets inside strings are counted too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
