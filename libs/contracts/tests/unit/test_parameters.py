"""Run parameters: schema checks, defaults (nested too), validation naming the parameter or the schema place."""

from __future__ import annotations

from typing import Any

import pytest

from automation_contracts import ContractError
from automation_contracts.parameters import (
    apply_defaults,
    check_schema,
    declared_names,
    resolve,
    resolve_defaults,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "site": {"type": "string", "default": "fra1", "enum": ["fra1", "ams2"]},
        "count": {"type": "integer", "minimum": 1},
        "target": {
            "type": "object",
            "properties": {"host": {"type": "string"}, "port": {"type": "integer", "default": 22}},
            "required": ["host"],
        },
        "when": {"type": "string", "format": "date-time"},
    },
    "required": ["count"],
    "additionalProperties": False,
}


def test_resolve_fills_defaults_nested_too_and_leaves_the_input_alone() -> None:
    given = {"count": 2, "target": {"host": "db1"}}
    assert resolve(SCHEMA, given) == {"count": 2, "site": "fra1", "target": {"host": "db1", "port": 22}}
    assert given == {"count": 2, "target": {"host": "db1"}}


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ({}, "parameters.count"),
        ({"count": 0}, "parameters.count"),
        ({"count": True}, "parameters.count"),
        ({"count": 1, "site": "nyc"}, "parameters.site"),
        ({"count": 1, "target": {}}, "parameters.target.host"),
        ({"count": 1, "surprise": 1}, "parameters.surprise"),
        ({"count": 1, "when": "yesterday"}, "parameters.when"),
    ],
)
def test_resolve_names_the_parameter_at_fault(given: dict[str, Any], path: str) -> None:
    with pytest.raises(ContractError) as caught:
        resolve(SCHEMA, given)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


def test_the_prefix_is_the_callers() -> None:
    with pytest.raises(ContractError) as caught:
        resolve(SCHEMA, {}, prefix="data.parameters")
    assert caught.value.path == "data.parameters.count"


def test_resolve_defaults_names_the_schema_place_to_fix() -> None:
    defaults = {"type": "object", "properties": {"site": {"type": "string", "default": "fra1"}}}
    assert resolve_defaults(defaults) == {"site": "fra1"}
    assert resolve_defaults({}) == {}
    with pytest.raises(ContractError) as missing:
        resolve_defaults(SCHEMA)
    assert missing.value.path == "parameters.properties.count.default"
    assert missing.value.reason == "parameter 'count' is required and has no default"
    wrong = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "default": [1]}}}
    with pytest.raises(ContractError) as bad_default:
        resolve_defaults(wrong)
    assert bad_default.value.path == "parameters.properties.tags.default"
    assert "is not of type 'string'" in bad_default.value.reason
    nested = {
        "type": "object",
        "properties": {"target": {"type": "object", "default": {}, "required": ["host"]}},
    }
    with pytest.raises(ContractError) as inner:
        resolve_defaults(nested)
    assert inner.value.path == "parameters.properties.target.properties.host.default"
    whole = {"type": "object", "minProperties": 1}
    with pytest.raises(ContractError) as top:
        resolve_defaults(whole)
    assert top.value.path == "parameters"


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "array"}, "parameters.type"),
        ({"type": ["string", "null"]}, "parameters.type"),
        ({"type": "object", "properties": {"a": {"minimum": "one"}}}, "parameters.properties.a.minimum"),
        ({"type": 5}, "parameters.type"),
    ],
)
def test_check_schema_refuses_what_cannot_describe_parameters(schema: dict[str, Any], path: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_schema(schema)
    assert caught.value.path == path


def test_check_schema_accepts_objects_and_open_schemas() -> None:
    check_schema(SCHEMA)
    check_schema({})
    check_schema({"type": ["object", "null"]})


def test_declared_names_and_apply_defaults() -> None:
    assert declared_names(SCHEMA) == {"site", "count", "target", "when"}
    assert declared_names({"type": "object"}) == frozenset()
    assert apply_defaults(SCHEMA, {"target": {"host": "h"}}) == {"site": "fra1", "target": {"host": "h", "port": 22}}


def test_a_schema_nobody_checked_gives_a_contract_error_naming_the_place() -> None:
    with pytest.raises(ContractError) as defaults:
        resolve_defaults({"properties": []})
    with pytest.raises(ContractError) as given:
        resolve({"properties": []}, {"a": 1})
    for caught in (defaults, given):
        assert caught.value.path == "parameters.properties"
        assert caught.value.reason.startswith("not a valid JSON Schema")
