"""Opaque cursors: what decodes, and every way a foreign one fails with a ValueError."""

from __future__ import annotations

import base64

import pytest

from automation_core.cursors import (
    MAX_CURSOR_CHARS,
    CursorError,
    decode_cursor_json,
    decode_cursor_text,
    encode_cursor_json,
    encode_cursor_text,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("text", ["", "inventory.synced", "2026-01-01T00:00:00+00:00|0b8f", "café ✓"])
def test_text_round_trips_unpadded_and_url_safe(text: str) -> None:
    cursor = encode_cursor_text(text)
    assert "=" not in cursor
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert decode_cursor_text(cursor) == text


def test_json_round_trips() -> None:
    value = ["2026-11-23T12:00:00.123456+00:00", "0b8f3e2a-5c1d-4e6f-9a7b-2c3d4e5f6a7b"]
    assert decode_cursor_json(encode_cursor_json(value)) == value


@pytest.mark.parametrize(
    ("cursor", "reason"),
    [
        ("A" * (MAX_CURSOR_CHARS + 4), "longer than"),
        ("abcde", "not base64url"),  # 5 characters: no whole byte
        (_b64(b"\xff\xfe"), "UTF-8"),
        (_b64(b"\x00"), "NUL"),
        (_b64(b"2026-01-01T00:00:00+00:00|\x00"), "NUL"),
    ],
)
def test_foreign_text_cursors_are_refused(cursor: str, reason: str) -> None:
    with pytest.raises(CursorError, match=reason):
        decode_cursor_text(cursor)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 3000, "nested deeper"),  # Python's parser would raise RecursionError
        (b"[[[[[1]]]]]", "nested deeper"),
        (b"not json", "JSON"),
        (b'["a", "b"', "JSON"),
        (b'["a\x00"]', "NUL"),
        (b'["2026-01-01T00:00:00+00:00\\u0000"]', "NUL"),  # fromisoformat() would stop at the NUL
        (b'{"\\u0000": 1}', "NUL"),
    ],
)
def test_foreign_json_cursors_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(CursorError, match=reason):
        decode_cursor_json(_b64(raw))


def test_a_cursor_error_is_a_value_error() -> None:
    assert issubclass(CursorError, ValueError)
