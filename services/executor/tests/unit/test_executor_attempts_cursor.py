"""The attempts listing's opaque cursor: it round-trips, and anything else is a 422 naming ``cursor``."""

from __future__ import annotations

import base64

import pytest

from automation_core.errors import InvalidInput
from automation_executor.api.attempts import decode_cursor, encode_cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(7)) == 7


@pytest.mark.parametrize(
    "cursor", ["%%%", _b64(b"b:1"), _b64(b"a:-1"), _b64(b"a:x"), _b64(b"a:1\x00"), _b64(b"\xff"), "A" * 5000]
)
def test_anything_else_is_an_invalid_input_naming_cursor(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor)
    assert caught.value.field == "cursor"
