"""Checking events and submissions: envelope, producer, storability, data, all or nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from automation_contracts import CloudEvent
from automation_event_gateway.domain.binding import Mode, Submission
from automation_event_gateway.domain.envelope import (
    check_producer,
    check_storable,
    is_reserved_type,
    parse_event,
)
from automation_event_gateway.domain.errors import EventRejected, RejectReason
from automation_event_gateway.domain.intake import check_data, check_envelopes
from automation_event_gateway.domain.schemas import compile_schema

SITE_SCHEMA = {
    "type": "object",
    "required": ["site"],
    "properties": {"site": {"type": "string", "minLength": 1}, "count": {"type": "integer"}},
    "additionalProperties": False,
}


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/inventory",
        "type": "inventory.synced",
        "data": {"site": "fra1"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def refusal(raw: object) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        parse_event(raw)
    return info.value


def test_a_valid_event_parses_with_its_extensions() -> None:
    parsed = parse_event(event(time="2026-11-23T12:00:00+01:00", subject="fra1", traceid="t1", priority=3))
    assert parsed.type == "inventory.synced"
    assert parsed.extensions == {"traceid": "t1", "priority": 3}
    assert parsed.time is not None
    assert parsed.time.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (event(specversion=...), "specversion"),
        (event(specversion="0.3"), "specversion"),
        (event(id=""), "id"),
        (event(id=...), "id"),
        (event(source="not a uri"), "source"),
        (event(source=""), "source"),
        (event(type=...), "type"),
        (event(type=""), "type"),
        (event(type="inventory.*"), "type"),
        (event(type="inventory..synced"), "type"),
        (event(time="2026-11-23"), "time"),
        (event(time="yesterday"), "time"),
        (event(dataschema="relative/path"), "dataschema"),
        (event(Bad=1), "Bad"),
        (event(toolongextensionname21=1), "toolongextensionname21"),
        (event(ratio=1.5), "ratio"),
        (event(nested={"a": 1}), "nested"),
        (event(data=..., data_base64="!!!"), "data_base64"),
        (event(data_base64="aGk="), ""),
    ],
)
def test_envelope_errors_name_the_attribute(raw: dict[str, Any], field: str) -> None:
    error = refusal(raw)
    assert error.field == field
    assert error.reason is RejectReason.INVALID_ENVELOPE
    assert error.message


def test_a_non_object_is_malformed() -> None:
    assert refusal([1, 2]).reason is RejectReason.MALFORMED


@pytest.mark.parametrize(
    ("item", "kind"), [([1], "an array"), (None, "null"), ("x", "a string"), (1, "a number"), (True, "a boolean")]
)
def test_a_structured_event_that_is_no_object_names_body(item: object, kind: str) -> None:
    with pytest.raises(EventRejected) as info:
        check_envelopes(Submission(Mode.STRUCTURED, (item,)), is_admin=False)
    error = info.value
    assert (error.reason, error.field) == (RejectReason.MALFORMED, "body")
    assert error.message == f"an event must be a JSON object, not {kind}"
    assert [d.field for d in error.details] == ["body"]


def test_a_batch_item_that_is_no_object_names_its_index() -> None:
    with pytest.raises(EventRejected) as info:
        check_envelopes(Submission(Mode.BATCH, (event(), 1)), is_admin=False)
    assert (info.value.field, info.value.message) == ("1", "an event must be a JSON object, not a number")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (event(subject="a\x00b"), "subject"),
        (event(data={"a": ["x", "b\x00"]}), "data.a.1"),
        (event(data={"k\x00": 1}), "data"),
        (event(id="x" * 257), "id"),
        (event(source="/" + "s" * 1024), "source"),
    ],
)
def test_unstorable_events_are_refused(raw: dict[str, Any], field: str) -> None:
    error = refusal(raw)
    assert error.reason is RejectReason.UNSTORABLE
    assert error.field == field


def test_non_finite_numbers_and_deep_data_are_unstorable() -> None:
    nan = CloudEvent.from_dict(event(data={"x": float("nan")}))
    with pytest.raises(EventRejected, match="finite"):
        check_storable(nan)
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    with pytest.raises(EventRejected, match="nested deeper"):
        check_storable(CloudEvent.from_dict(event(data=deep)))


@pytest.mark.parametrize(
    ("event_type", "reserved"),
    [
        ("run.requested", True),
        ("job.created", True),
        ("job.anything", True),
        ("execution.succeeded", True),
        ("browser.task", True),
        ("run.other", False),
        ("jobs.created", False),
        ("inventory.synced", False),
    ],
)
def test_reserved_types(event_type: str, reserved: bool) -> None:
    assert is_reserved_type(event_type) is reserved


def test_platform_types_need_the_admin() -> None:
    platform = CloudEvent.from_dict(event(type="job.created"))
    with pytest.raises(EventRejected) as info:
        check_producer(platform, is_admin=False)
    assert info.value.reason is RejectReason.FORBIDDEN_TYPE
    assert info.value.field == "type"
    check_producer(platform, is_admin=True)
    unknown = CloudEvent.from_dict(event(type="job.invented"))
    with pytest.raises(EventRejected, match="not a platform event type"):
        check_producer(unknown, is_admin=True)
    check_producer(CloudEvent.from_dict(event()), is_admin=False)


def test_a_batch_is_all_or_nothing_and_names_index_and_field() -> None:
    submission = Submission(Mode.BATCH, (event(), event(type=...), event(source="bad uri"), event()))
    with pytest.raises(EventRejected) as info:
        check_envelopes(submission, is_admin=False)
    error = info.value
    assert error.field == "1.type"
    assert error.reason is RejectReason.INVALID_ENVELOPE
    assert [d.field for d in error.details] == ["1.type", "2.source"]


def test_a_batch_refuses_platform_types_from_non_admins() -> None:
    submission = Submission(Mode.BATCH, (event(), event(type="execution.started")))
    with pytest.raises(EventRejected) as info:
        check_envelopes(submission, is_admin=False)
    assert info.value.field == "1.type"
    assert info.value.reason is RejectReason.FORBIDDEN_TYPE


def test_a_valid_batch_yields_its_events_in_order() -> None:
    raws = (event(id="a"), event(id="b"))
    events = check_envelopes(Submission(Mode.BATCH, raws), is_admin=False)
    assert [e.id for e in events] == ["a", "b"]


def test_binary_mode_fields_are_headers() -> None:
    with pytest.raises(EventRejected) as info:
        check_envelopes(Submission(Mode.BINARY, (event(source="bad uri"),)), is_admin=False)
    assert info.value.field == "ce-source"


def test_data_is_checked_against_registered_schemas() -> None:
    validators = {"inventory.synced": compile_schema("inventory.synced", SITE_SCHEMA)}
    raws = (event(), event(data={"count": 3}), event(data={"site": "x", "extra": 1}), event(type="other.thing"))
    submission = Submission(Mode.BATCH, raws)
    events = check_envelopes(submission, is_admin=False)
    with pytest.raises(EventRejected) as info:
        check_data(submission, events, validators)
    assert info.value.reason is RejectReason.INVALID_DATA
    assert [d.field for d in info.value.details] == ["1.data.site", "2.data.extra"]


def test_registered_types_need_json_data() -> None:
    validators = {"inventory.synced": compile_schema("inventory.synced", SITE_SCHEMA)}
    submission = Submission(Mode.STRUCTURED, (event(data=..., data_base64="aGk="),))
    with pytest.raises(EventRejected) as info:
        check_data(submission, check_envelopes(submission, is_admin=False), validators)
    assert info.value.field == "data_base64"


def test_platform_data_is_checked_against_proto_schemas() -> None:
    bad = event(type="execution.started", data={"execution_id": "nope"})
    submission = Submission(Mode.STRUCTURED, (bad,))
    events = check_envelopes(submission, is_admin=True)
    with pytest.raises(EventRejected) as info:
        check_data(submission, events, {})
    assert info.value.reason is RejectReason.INVALID_DATA
    assert info.value.field.startswith("data")


def test_external_types_without_a_schema_take_any_data() -> None:
    submission = Submission(Mode.STRUCTURED, (event(type="free.form", data=[1, "two", None]),))
    check_data(submission, check_envelopes(submission, is_admin=False), {})
