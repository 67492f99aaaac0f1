"""Server-sent events framing of followed logs, and Last-Event-ID positions."""

from __future__ import annotations

import json

import pytest

from automation_core.errors import InvalidInput
from automation_job_api.domain.sse import START, LogPosition, comment, frame, parse_last_event_id


def test_a_json_frame_has_event_id_and_one_data_line_and_ends_with_a_blank_line() -> None:
    text = frame({"attempt": 1, "seq": 0, "entries": [{"text": "a\nb"}]}, event="log", event_id="1:0")
    assert text == 'event: log\nid: 1:0\ndata: {"attempt":1,"seq":0,"entries":[{"text":"a\\nb"}]}\n\n'
    data = "".join(line[len("data: ") :] for line in text.splitlines() if line.startswith("data: "))
    assert json.loads(data)["entries"][0]["text"] == "a\nb"


def test_text_with_line_breaks_becomes_several_data_lines() -> None:
    assert frame("one\ntwo\r\nthree\rfour") == "data: one\ndata: two\ndata: three\ndata: four\n\n"
    assert frame("", event="end") == "event: end\ndata: \n\n"


def test_non_ascii_stays_readable() -> None:
    assert frame({"text": "grüße"}) == 'data: {"text":"grüße"}\n\n'


def test_a_comment_frame_is_ignored_by_clients() -> None:
    assert comment() == ": keepalive\n\n"
    assert comment("a\nb") == ": a\n: b\n\n"


@pytest.mark.parametrize(
    ("header", "position"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1:0", LogPosition(1, 0)),
        (" 3:12 ", LogPosition(3, 12)),
        ("1:2147483647", LogPosition(1, 2**31 - 1)),  # the reaper's line for a lost attempt
    ],
)
def test_last_event_id_names_a_batch(header: str | None, position: LogPosition | None) -> None:
    assert parse_last_event_id(header) == position


@pytest.mark.parametrize("header", ["1", "1:", "a:b", "1:2:3", "-1:0", "1.0", "1:2147483648", "12345678901:0"])
def test_a_malformed_last_event_id_is_a_problem_naming_the_header(header: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_last_event_id(header)
    assert caught.value.field == "Last-Event-ID"


def test_positions_order_by_attempt_then_seq_and_start_before_everything() -> None:
    assert START < LogPosition(1, 0) < LogPosition(1, 7) < LogPosition(2, 0)
    assert LogPosition(2, 5).event_id() == "2:5"
    assert parse_last_event_id(LogPosition(2, 5).event_id()) == LogPosition(2, 5)
