"""Registering JSON Schemas: what is refused, and where the error is named."""

from __future__ import annotations

from typing import Any

import pytest

from automation_event_gateway.domain.schemas import InvalidSchema, check_schema, compile_schema


def invalid(schema: Any) -> InvalidSchema:
    with pytest.raises(InvalidSchema) as info:
        check_schema("inventory.synced", schema)
    return info.value


def test_valid_schemas_pass() -> None:
    check_schema("a.b", {"type": "object"})
    check_schema("a.b", True)
    check_schema("a.b", {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"})
    check_schema("a.b", {"$defs": {"site": {"type": "string"}}, "properties": {"site": {"$ref": "#/$defs/site"}}})
    check_schema("a.b", {"properties": {"spec": {"$ref": "urn:automation:schema:job-spec:v1"}}})
    check_schema("a.b", {"$id": "https://example.com/s", "$defs": {"x": {"$id": "x", "type": "string"}}, "$ref": "x"})
    check_schema("a.b", {"enum": [{"$ref": "not-a-reference"}]})


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ([], "schema"),
        ("string", "schema"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "schema.$schema"),
        ({"type": "strin"}, "schema.type"),
        ({"properties": {"site": {"minLength": -1}}}, "schema.properties.site.minLength"),
        ({"properties": {"site": {"$ref": "#/$defs/missing"}}}, "schema.properties.site.$ref"),
        ({"$ref": "https://example.com/remote.json"}, "schema.$ref"),
    ],
)
def test_invalid_schemas_name_the_spot(schema: Any, field: str) -> None:
    assert invalid(schema).field == field


def test_compiled_validators_assert_formats_and_resolve_platform_refs() -> None:
    validator = compile_schema(
        "a.b",
        {
            "type": "object",
            "properties": {"at": {"type": "string", "format": "date-time"}},
            "$defs": {"spec": {"$ref": "urn:automation:schema:job-spec:v1"}},
        },
    )
    assert validator.is_valid({"at": "2026-11-23T12:00:00Z"})
    assert not validator.is_valid({"at": "tomorrow"})


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "schema.$defs.a.$ref"),
        ({"not": {"not": {"$ref": "#"}}}, "schema.not.not.$ref"),
        ({"properties": {"site": {"pattern": "(a)\\1"}}}, "schema.properties.site.pattern"),
        ({"$id": "https://example.com/s", "$ref": "remote.json"}, "schema.$ref"),
    ],
)
def test_schemas_validation_could_not_use_are_refused(schema: Any, field: str) -> None:
    assert invalid(schema).field == field


def test_a_stored_schema_that_cannot_be_used_rejects_the_event_naming_data() -> None:
    from automation_contracts import CloudEvent
    from automation_event_gateway.domain.errors import EventRejected, RejectReason
    from automation_event_gateway.domain.schemas import validate_data

    validator = compile_schema("a.b", {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})
    event = CloudEvent.from_dict({"specversion": "1.0", "id": "1", "source": "/s", "type": "a.b", "data": {}})
    with pytest.raises(EventRejected) as caught:
        validate_data(event, validator)
    assert (caught.value.reason, caught.value.field) == (RejectReason.INVALID_DATA, "data")
    assert "reference cycle" in caught.value.message
