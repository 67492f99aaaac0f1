"""The CloudEvents HTTP binding: mode selection, structured and batch bodies, binary-mode headers."""

from __future__ import annotations

import base64
import json

import pytest

from automation_event_gateway.domain.binding import (
    MediaType,
    Mode,
    Submission,
    binary_attributes,
    mode_of,
    read_submission,
)
from automation_event_gateway.domain.errors import EventRejected, RejectReason

CE = [
    ("ce-specversion", "1.0"),
    ("ce-id", "42"),
    ("ce-source", "/inventory"),
    ("ce-type", "inventory.synced"),
]


def rejected(call: object) -> EventRejected:
    assert callable(call)
    with pytest.raises(EventRejected) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/cloudevents+json", Mode.STRUCTURED),
        ("Application/CloudEvents+JSON; charset=UTF-8", Mode.STRUCTURED),
        ("application/cloudevents-batch+json", Mode.BATCH),
        ("application/json", Mode.BINARY),
        ("text/plain", Mode.BINARY),
        (None, Mode.BINARY),
        ("", Mode.BINARY),
    ],
)
def test_mode_follows_the_content_type(content_type: str | None, mode: Mode) -> None:
    assert mode_of(content_type) is mode


def test_media_type_parsing() -> None:
    media = MediaType.parse('Text/Plain; Charset="ISO-8859-1"; x=y')
    assert media is not None
    assert media.essence == "text/plain"
    assert media.charset == "ISO-8859-1"
    assert media.is_textual
    assert not media.is_json
    json_media = MediaType.parse("application/vnd.acme+json")
    assert json_media is not None
    assert json_media.is_json
    binary_media = MediaType.parse("application/octet-stream")
    assert binary_media is not None
    assert not binary_media.is_textual


def test_binary_headers_become_attributes_and_json_body_becomes_data() -> None:
    headers = [
        *CE,
        ("ce-time", "2026-11-23T12:00:00Z"),
        ("ce-subject", "site%2Ffra1%20%C3%A9"),
        ("ce-dataschema", "https://schemas.example/inventory"),
        ("ce-traceid", "abc"),
        ("x-other", "ignored"),
        ("content-type", "application/json"),
    ]
    attrs = binary_attributes(headers, "application/json", b'{"site": "fra1", "items": [1, 2]}')
    assert attrs == {
        "specversion": "1.0",
        "id": "42",
        "source": "/inventory",
        "type": "inventory.synced",
        "time": "2026-11-23T12:00:00Z",
        "subject": "site/fra1 é",
        "dataschema": "https://schemas.example/inventory",
        "traceid": "abc",
        "datacontenttype": "application/json",
        "data": {"site": "fra1", "items": [1, 2]},
    }


def test_header_names_are_case_insensitive() -> None:
    attrs = binary_attributes(
        [("CE-SpecVersion", "1.0"), ("Ce-Id", "1"), ("ce-SOURCE", "/s"), ("ce-type", "t")], None, b""
    )
    assert attrs == {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def test_text_bodies_stay_text_and_binary_bodies_become_base64() -> None:
    text = binary_attributes(CE, "text/plain; charset=iso-8859-1", "café".encode("latin-1"))
    assert text["data"] == "café"
    assert text["datacontenttype"] == "text/plain; charset=iso-8859-1"
    xml = binary_attributes(CE, "application/xml", b"<a/>")
    assert xml["data"] == "<a/>"
    raw = bytes(range(256))
    blob = binary_attributes(CE, "application/octet-stream", raw)
    assert "data" not in blob
    assert base64.b64decode(blob["data_base64"]) == raw
    untyped = binary_attributes(CE, None, b"\x00\x01")
    assert untyped["data_base64"] == base64.b64encode(b"\x00\x01").decode()
    assert "datacontenttype" not in untyped


def test_an_empty_body_carries_no_data() -> None:
    attrs = binary_attributes(CE, "application/json", b"")
    assert "data" not in attrs
    assert "data_base64" not in attrs


@pytest.mark.parametrize(
    ("headers", "content_type", "body", "field", "reason"),
    [
        ([("x-foo", "1")], "application/json", b"{}", "ce-specversion", RejectReason.INVALID_ENVELOPE),
        ([*CE, ("ce-id", "43")], None, b"", "ce-id", RejectReason.INVALID_ENVELOPE),
        ([*CE, ("ce-datacontenttype", "text/plain")], None, b"", "ce-datacontenttype", RejectReason.INVALID_ENVELOPE),
        ([*CE, ("ce-data", "x")], None, b"", "ce-data", RejectReason.INVALID_ENVELOPE),
        ([*CE, ("ce-Bad_Name", "x")], None, b"", "ce-bad_name", RejectReason.INVALID_ENVELOPE),
        ([*CE, ("ce-subject", "%C3%28")], None, b"", "ce-subject", RejectReason.INVALID_ENVELOPE),
        (CE, "application/json", b"{not json", "data", RejectReason.MALFORMED),
        (CE, "application/json", b"NaN", "data", RejectReason.MALFORMED),
        (CE, "application/json; charset=latin-1", b"{}", "content-type", RejectReason.UNSUPPORTED_MEDIA_TYPE),
        (CE, "text/plain; charset=klingon", b"x", "content-type", RejectReason.UNSUPPORTED_MEDIA_TYPE),
        (CE, "text/plain", b"\xff\xfe", "data", RejectReason.MALFORMED),
    ],
)
def test_binary_mode_refusals_name_the_header(
    headers: list[tuple[str, str]], content_type: str | None, body: bytes, field: str, reason: RejectReason
) -> None:
    error = rejected(lambda: binary_attributes(headers, content_type, body))
    assert error.field == field
    assert error.reason is reason


@pytest.mark.parametrize(
    "charset", ["rot13", "rot_13", "base64", "hex", "zlib", "bz2", "quopri", "uu", "undefined", "UNDEFINED"]
)
def test_a_charset_that_is_no_text_encoding_is_an_unsupported_media_type(charset: str) -> None:
    error = rejected(lambda: binary_attributes(CE, f"text/plain; charset={charset}", b"hello"))
    assert error.field == "content-type"
    assert error.reason is RejectReason.UNSUPPORTED_MEDIA_TYPE
    assert "not a text encoding" in error.message


def test_structured_and_batch_bodies() -> None:
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    single = read_submission("application/cloudevents+json; charset=utf-8", [], json.dumps(event).encode(), max_batch=5)
    assert single == Submission(Mode.STRUCTURED, (event,))
    batch = read_submission("application/cloudevents-batch+json", [], json.dumps([event, event]).encode(), max_batch=5)
    assert batch.mode is Mode.BATCH
    assert batch.items == (event, event)
    empty = read_submission("application/cloudevents-batch+json", [], b"[]", max_batch=5)
    assert empty.items == ()


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/cloudevents+json", b"{", RejectReason.MALFORMED),
        ("application/cloudevents+json", b'{"a": Infinity}', RejectReason.MALFORMED),
        ("application/cloudevents+json", "{}".encode("utf-16"), RejectReason.MALFORMED),
        ("application/cloudevents+json; charset=utf-16", b"{}", RejectReason.UNSUPPORTED_MEDIA_TYPE),
        ("application/cloudevents-batch+json", b'{"specversion": "1.0"}', RejectReason.MALFORMED),
        ("application/cloudevents-batch+json", b"[{}, {}, {}]", RejectReason.TOO_LARGE),
        ("application/cloudevents+json", b"[" * 100_000, RejectReason.MALFORMED),
    ],
)
def test_unreadable_bodies_are_refused(content_type: str, body: bytes, reason: RejectReason) -> None:
    error = rejected(lambda: read_submission(content_type, [], body, max_batch=2))
    assert error.reason is reason


def test_fields_are_named_as_the_caller_sent_them() -> None:
    structured = Submission(Mode.STRUCTURED, ({},))
    batch = Submission(Mode.BATCH, ({}, {}))
    binary = Submission(Mode.BINARY, ({},))
    assert structured.field(0, "type") == "type"
    assert batch.field(1, "type") == "1.type"
    assert batch.field(1, "data.site") == "1.data.site"
    assert batch.field(0, "") == "0"
    assert binary.field(0, "source") == "ce-source"
    assert binary.field(0, "data.site") == "data.site"
    assert binary.field(0, "data_base64") == "data"
    assert binary.field(0, "datacontenttype") == "content-type"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            "application/cloudevents+json",
            b"{bad",
            "JSON syntax error at line 1, column 2: Expecting property name enclosed in double quotes",
        ),
        ("application/cloudevents+json", b"", "JSON syntax error at line 1, column 1: Expecting value"),
        ("application/cloudevents+json", b'{"a": NaN}', "not valid JSON: NaN is not JSON"),
        ("application/cloudevents+json", "{}".encode("utf-16"), "not valid UTF-8: invalid start byte at byte 0"),
        ("application/cloudevents-batch+json", b"{bad", "JSON syntax error at line 1, column 2"),
        ("application/cloudevents-batch+json", b"{}", "a batch is a JSON array of events, not an object"),
        ("application/cloudevents-batch+json", b'"x"', "a batch is a JSON array of events, not a string"),
        ("application/cloudevents-batch+json", b"null", "a batch is a JSON array of events, not null"),
        ("application/cloudevents-batch+json", b"7", "a batch is a JSON array of events, not a number"),
    ],
)
def test_a_body_that_is_not_what_its_mode_needs_names_body(content_type: str, body: bytes, message: str) -> None:
    error = rejected(lambda: read_submission(content_type, [], body, max_batch=5))
    assert (error.reason, error.field) == (RejectReason.MALFORMED, "body")
    assert error.message.startswith(message)
    assert str(error).startswith(f"body: {message}")


def test_a_binary_json_body_that_is_not_json_names_data() -> None:
    error = rejected(lambda: read_submission("application/json", CE, b"{bad", max_batch=5))
    assert (error.reason, error.field) == (RejectReason.MALFORMED, "data")
    assert error.message.startswith("JSON syntax error at line 1, column 2")


def test_the_structured_event_as_a_whole_is_the_body() -> None:
    assert Submission(Mode.STRUCTURED, ({},)).field(0, "") == "body"
