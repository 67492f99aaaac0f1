"""Which user schemas the platform accepts, and validating against them without fetching, recursing or backtracking."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from automation_contracts import ContractError, schema_registry
from automation_contracts.parameters import resolve, resolve_defaults
from automation_contracts.schema_safety import (
    MAX_DEPTH,
    UnusableSchema,
    Validator,
    check_usable,
    compile_schema,
    pattern_search,
)

SELF_REFERENCE = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
TREE = {
    "$defs": {
        "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
    },
    "$ref": "#/$defs/node",
}
EVIL = "a" * 28 + "!"  # Python's backtracking re needs about ten seconds for ^(a+)+$ on this


def nested(keyword: str, levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range(levels):
        schema = {keyword: schema}
    return schema


def refused(schema: Any, **kwargs: Any) -> UnusableSchema:
    with pytest.raises(UnusableSchema) as caught:
        check_usable(schema, "p", **kwargs)
    assert isinstance(caught.value, ContractError)
    return caught.value


@pytest.mark.parametrize(
    "schema",
    [
        True,
        {},
        TREE,
        {"$id": "https://example.com/s", "$defs": {"x": {"$id": "x", "type": "string"}}, "$ref": "x"},
        {"$defs": {"n": {"$anchor": "name", "type": "string"}}, "properties": {"a": {"$ref": "#name"}}},
        {"properties": {"a": {"pattern": "^\\p{L}+$"}, "b": {"format": "regex"}}, "patternProperties": {"^x-": {}}},
        {"$defs": {"list": {"anyOf": [{"type": "null"}, {"properties": {"next": {"$ref": "#/$defs/list"}}}]}}},
        {"enum": [{"$ref": "#/nowhere"}], "default": {"$ref": "http://example.com/"}},
        {"$dynamicRef": "#/$defs/a", "$defs": {"a": {"type": "string"}}},
        nested("not", MAX_DEPTH - 1),
    ],
)
def test_usable_schemas_are_accepted(schema: Any) -> None:
    check_usable(schema, "p")


@pytest.mark.parametrize(
    ("schema", "path", "says"),
    [
        ([], "p", "object or a boolean"),
        (nested("not", MAX_DEPTH), "p" + ".not" * MAX_DEPTH, "more than 32 levels"),
        (nested("not", 300), "p" + ".not" * MAX_DEPTH, "more than 32 levels"),
        ({"type": "strin"}, "p.type", "not a valid JSON Schema"),
        ({"$ref": "#/nowhere"}, "p.$ref", "cannot resolve '#/nowhere'"),
        ({"$ref": "http://127.0.0.1:9/x.json"}, "p.$ref", "nothing is ever fetched"),
        ({"$id": "https://example.com/s", "$ref": "other.json"}, "p.$ref", "cannot resolve"),
        ({"$ref": "urn:automation:schema:job-spec:v1"}, "p.$ref", "only references inside the schema are"),
        ({"$ref": "#/default", "default": {}}, "p.$ref", "does not point at a subschema"),
        ({"$ref": "#/type", "type": "object"}, "p.$ref", "does not point at a subschema"),
        (SELF_REFERENCE, "p.$defs.a.$ref", "reference cycle"),
        ({"$ref": "#"}, "p.$ref", "reference cycle"),
        ({"allOf": [{"$ref": "#"}]}, "p.allOf.0.$ref", "reference cycle"),
        (
            {
                "$defs": {
                    "a": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/b"}]},
                    "b": {"not": {"$ref": "#/$defs/a"}},
                }
            },
            "p.$defs.a.anyOf.1.$ref",
            "reference cycle",
        ),
        ({"if": {"$ref": "#"}, "then": {}}, "p.if.$ref", "reference cycle"),
        (
            {"$defs": {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(40)} | {"a40": {}}},
            "p.$defs.a8",
            "more than 32 schemas apply to the same value",
        ),
        ({"$defs": {"a": {"$dynamicAnchor": "a"}}}, "p.$defs.a.$dynamicAnchor", "not supported"),
        ({"properties": {"r": {"pattern": "(a)\\1"}}}, "p.properties.r.pattern", "not an RE2 regular expression"),
        ({"properties": {"r": {"pattern": "a(?=b)"}}}, "p.properties.r.pattern", "no lookaround"),
        ({"patternProperties": {"(?<!x)y": {}}}, "p.patternProperties.(?<!x)y", "not an RE2 regular expression"),
    ],
)
def test_unusable_schemas_are_refused_naming_the_place(schema: Any, path: str, says: str) -> None:
    error = refused(schema)
    assert error.path == path
    assert says in error.reason


def test_the_platforms_schemas_are_reachable_only_when_the_caller_allows_them() -> None:
    schema = {"properties": {"spec": {"$ref": "urn:automation:schema:job-spec:v1"}}}
    check_usable(schema, "p", registry=schema_registry())
    compiled = compile_schema(schema, registry=schema_registry())
    assert not compiled.is_valid({"spec": {"name": 5}})
    assert refused(schema).path == "p.properties.spec.$ref"


def test_checking_a_huge_or_hostile_schema_is_quick() -> None:
    started = time.monotonic()
    refused(nested("allOf", 100_000) | {})  # nesting is measured without recursion
    fan_out = {"$defs": {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(15)} | {"d15": {}}}
    refused(fan_out)  # 2**15 schemas would apply to one value: counted once per schema, not per path
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"pattern": "^(a+)+$"}, EVIL),
        ({"patternProperties": {"^(a+)+$": False}}, {EVIL: 1}),
        ({"patternProperties": {"^(a+)+$": {}}, "additionalProperties": False}, {EVIL: 1}),
        ({"patternProperties": {"^(a+)+$": {}}, "unevaluatedProperties": False}, {EVIL: 1}),
        ({"propertyNames": {"pattern": "^(a+)+$"}}, {EVIL: 1}),
    ],
)
def test_patterns_are_matched_in_linear_time(schema: dict[str, Any], instance: Any) -> None:
    check_usable(schema, "p")
    started = time.monotonic()
    valid = compile_schema(schema).is_valid(instance)
    assert time.monotonic() - started < 0.5
    assert not valid or ("patternProperties" in schema and "additionalProperties" not in schema)


def test_patterns_keep_their_meaning() -> None:
    assert pattern_search("^(a+)+$", "aaa")
    assert not pattern_search("^(a+)+$", "aab")
    assert pattern_search("b", "abc")  # search, not match, as JSON Schema says
    assert pattern_search("^\\p{Lu}", "Ärger")
    validator = compile_schema({"properties": {"re": {"format": "regex"}}})
    assert validator.is_valid({"re": "^a+$"})
    assert not validator.is_valid({"re": "(a)\\1"})  # the "regex" format means RE2 too


def test_every_keyword_that_matches_a_pattern_does_so_with_re2() -> None:
    # jsonschema's own keyword code, its module-level ``re`` swapped: an upgrade that moves the matching
    # elsewhere shows here (and in the timing tests above).
    for name, function in Validator.VALIDATORS.items():
        if "re" in function.__code__.co_names:
            assert function.__globals__["re"] is not re, name
    helpers = ("find_additional_properties", "find_evaluated_property_keys_by_schema")
    for name in ("additionalProperties", "unevaluatedProperties"):
        namespace = Validator.VALIDATORS[name].__globals__
        for helper in helpers:
            assert namespace[helper].__globals__["re"] is not re, (name, helper)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/remote.json", requests
    finally:
        server.shutdown()
        server.server_close()


def test_validation_never_fetches_a_remote_reference(listener: tuple[str, list[str]]) -> None:
    url, requests = listener
    schema = {"type": "object", "properties": {"a": {"$ref": url}}}
    assert refused(schema).path == "p.properties.a.$ref"
    with pytest.raises(UnusableSchema) as stored:
        compile_schema(schema).first_error({"a": 1}, "p")
    assert stored.value.path == "p.properties.a.$ref"
    with pytest.raises(ContractError) as run:
        resolve(schema, {"a": "x"})
    with pytest.raises(ContractError) as defaults:
        resolve_defaults({"type": "object", "properties": {"a": {"$ref": url, "default": "x"}}})
    assert (run.value.path, defaults.value.path) == ("parameters.properties.a.$ref", "parameters.properties.a.$ref")
    assert requests == []


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        (SELF_REFERENCE, "parameters.$defs.a.$ref"),
        ({"$ref": "#/nowhere"}, "parameters.$ref"),
        ({"allOf": [{"$ref": "#"}]}, "parameters.allOf.0.$ref"),
        ({"properties": {"a": {"pattern": "(?=a)"}}}, "parameters.properties.a.pattern"),
        ({"properties": {"a": {"$dynamicRef": "#/$defs/x"}}}, "parameters.properties.a.$dynamicRef"),
    ],
)
def test_a_stored_unusable_schema_is_a_contract_error_naming_the_place_at_use(schema: Any, path: str) -> None:
    # (stored before the checks, or never checked: a scheduler reading an old job version)
    with pytest.raises(ContractError) as caught:
        resolve(schema, {"a": "a"})
    assert caught.value.path == path
    if "properties" not in schema:  # a part of the schema no value reaches is not an error
        with pytest.raises(ContractError) as unattended:
            resolve_defaults(schema)
        assert unattended.value.path == path


def test_a_value_too_deep_for_a_recursive_schema_is_an_error_not_a_crash() -> None:
    value: dict[str, Any] = {}
    for _ in range(3000):
        value = {"children": [value]}
    with pytest.raises(UnusableSchema) as caught:
        compile_schema(TREE).first_error(value, "data")
    assert caught.value.path == "data"
    assert "nests too deeply" in caught.value.reason


def test_schemas_that_multiply_the_work_per_value_are_refused() -> None:
    """Each level an allOf of ten references to the next: no cycle, a chain of four, yet 10**4 schemas
    would apply to the value at the bottom level. A few references to shared definitions pass."""
    import time

    from automation_contracts.schema_safety import MAX_IN_PLACE, UnusableSchema, check_usable, compile_schema

    levels = {f"l{n}": {"allOf": [{"$ref": f"#/$defs/l{n + 1}"}] * 10} for n in range(4)}
    levels["l4"] = {"type": "string", "pattern": "^a+$"}
    fanning = {"$defs": levels, "$ref": "#/$defs/l0"}
    with pytest.raises(UnusableSchema, match=f"more than {MAX_IN_PLACE} schemas would apply to one value") as refused:
        check_usable(fanning, "parameters")
    assert refused.value.path.startswith("parameters.$defs.l"), refused.value.path
    started = time.monotonic()
    assert compile_schema(fanning).is_valid("a" * 10) is True  # unchecked, stored before: slow, but it ends
    assert time.monotonic() - started < 30
    shared = {
        "$defs": {"site": {"type": "string"}, "n": {"type": "integer"}},
        "type": "object",
        "properties": {f"p{i}": {"allOf": [{"$ref": "#/$defs/site"}, {"$ref": "#/$defs/n"}]} for i in range(50)},
    }
    check_usable(shared, "parameters")
