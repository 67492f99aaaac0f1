"""Run parameters: defaults applied, then validated against the job's schema."""

from __future__ import annotations

from typing import Any

import pytest

from automation_core.errors import InvalidInput
from automation_job_api.domain.parameters import check_parameters_schema, check_unattended_defaults, resolve_parameters

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "site": {"type": "string", "default": "fra1", "enum": ["fra1", "ams2"]},
        "count": {"type": "integer", "minimum": 1},
        "dry_run": {"type": "boolean", "default": False},
        "target": {
            "type": "object",
            "properties": {"host": {"type": "string"}, "port": {"type": "integer", "default": 22}},
            "required": ["host"],
        },
        "tags": {"type": "array", "items": {"type": "string"}, "default": []},
    },
    "required": ["count"],
    "additionalProperties": False,
}


def test_defaults_fill_what_the_run_leaves_out_including_nested_objects() -> None:
    given = {"count": 2, "target": {"host": "db1"}}
    resolved = resolve_parameters(SCHEMA, given)
    assert resolved == {
        "count": 2,
        "site": "fra1",
        "dry_run": False,
        "tags": [],
        "target": {"host": "db1", "port": 22},
    }
    assert given == {"count": 2, "target": {"host": "db1"}}  # the caller's dict is not touched


def test_given_values_win_over_defaults() -> None:
    assert resolve_parameters(SCHEMA, {"count": 1, "site": "ams2"})["site"] == "ams2"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "parameters.count"),
        ({"count": "3"}, "parameters.count"),
        ({"count": 0}, "parameters.count"),
        ({"count": 1, "site": "nyc"}, "parameters.site"),
        ({"count": 1, "target": {"port": 2}}, "parameters.target.host"),
        ({"count": 1, "target": {"host": "h", "port": "x"}}, "parameters.target.port"),
        ({"count": 1, "tags": ["a", 1]}, "parameters.tags.1"),
        ({"count": 1, "surprise": True}, "parameters.surprise"),
    ],
)
def test_invalid_values_name_the_parameter(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_parameters(SCHEMA, values)
    assert caught.value.field == field


def test_an_open_schema_accepts_anything() -> None:
    assert resolve_parameters({"type": "object"}, {"x": [1, {"y": None}]}) == {"x": [1, {"y": None}]}


def test_a_schema_that_cannot_describe_parameters_is_a_problem_naming_the_place() -> None:
    """The rules are automation_contracts.parameters' (tested there); here: the 422 they become."""
    with pytest.raises(InvalidInput) as caught:
        check_parameters_schema({"type": "object", "properties": {"a": {"minimum": "one"}}})
    assert caught.value.field == "parameters.properties.a.minimum"
    assert caught.value.detail.startswith("parameters.properties.a.minimum: not a valid JSON Schema: ")


def test_valid_schemas_pass() -> None:
    check_parameters_schema(SCHEMA)
    check_parameters_schema({})


def test_unattended_defaults_name_the_default_to_add() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_unattended_defaults(SCHEMA)
    assert caught.value.field == "parameters.properties.count.default"
    check_unattended_defaults({"type": "object", "properties": {"n": {"type": "integer", "default": 1}}})
