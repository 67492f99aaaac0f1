"""The pydantic models and the JSON Schema files describe the same structure.

Both sides are reduced by one walker to a set of ``(path, required, default)`` entries: every
declared property, recursively through nested objects, array items, ``$ref``s and unions.
Union branches told apart by a ``type`` constant are labelled (``actions[]<goto>.url``), so each
browser action is compared on its own. Constraint-only subschemas (``not``, ``if``, and branches
declaring neither ``type`` nor ``$ref``, such as the cookie's url-or-domain rule) are assertions,
not structure, and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from automation_contracts import EVENT_MODELS, CloudEvent, JobSpec, load_schemas, schema_registry, urn

if TYPE_CHECKING:
    from referencing._core import Resolver  # referencing documents the class but exports it only from here

Schema = Mapping[str, Any]
MODELS: dict[str, type[BaseModel]] = {**EVENT_MODELS, "cloudevent": CloudEvent, "job-spec": JobSpec}
COMPOSITIONS = ("allOf", "anyOf", "oneOf")


@dataclass
class Walk:
    """What the walker saw in one schema document."""

    entries: set[tuple[str, bool, str]] = field(default_factory=set)
    undocumented: list[str] = field(default_factory=list)
    open_objects: list[str] = field(default_factory=list)


def _resolve(schema: Schema, resolver: Resolver[Any]) -> tuple[Schema, Resolver[Any]]:
    while "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema, resolver = {**resolved.contents, **siblings}, resolved.resolver
    return schema, resolver


def _structural_branches(schema: Schema) -> list[Schema]:
    branches: list[Schema] = []
    candidates = [item for key in COMPOSITIONS for item in schema.get(key, [])]
    for candidate in [schema, *candidates]:
        branches.extend(candidate[key] for key in ("then", "else") if key in candidate)
    branches.extend(candidates)
    return [branch for branch in branches if "$ref" in branch or "type" in branch]


def _walk(schema: Schema, resolver: Resolver[Any], prefix: str, out: Walk) -> None:
    schema, resolver = _resolve(schema, resolver)
    labelled: dict[str, tuple[Schema, Resolver[Any]]] = {}
    for branch in _structural_branches(schema):
        contents, branch_resolver = _resolve(branch, resolver)
        label = contents.get("properties", {}).get("type", {}).get("const")
        if isinstance(label, str):
            labelled[label] = (contents, branch_resolver)
        else:
            _walk(contents, branch_resolver, prefix, out)
    if labelled:
        for label, (contents, branch_resolver) in labelled.items():
            _properties(schema, resolver, f"{prefix}<{label}>", out)
            _walk(contents, branch_resolver, f"{prefix}<{label}>", out)
    elif "properties" in schema:
        _properties(schema, resolver, prefix, out)
        if schema.get("additionalProperties") is not False and schema.get("title") != "CloudEvent":
            out.open_objects.append(prefix or "(root)")
    if isinstance(schema.get("items"), Mapping):
        _walk(schema["items"], resolver, f"{prefix}[]", out)


def _properties(schema: Schema, resolver: Resolver[Any], prefix: str, out: Walk) -> None:
    required = set(schema.get("required", []))
    for name, subschema in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        if "description" not in subschema:
            out.undocumented.append(path)
        contents, _ = _resolve(subschema, resolver)
        default = json.dumps(contents["default"], sort_keys=True) if "default" in contents else ""
        out.entries.add((path, name in required, default))
        _walk(subschema, resolver, path, out)


def walk_file(name: str) -> Walk:
    out = Walk()
    schema_id = urn(name)
    _walk(load_schemas()[schema_id], schema_registry().resolver(schema_id), "", out)
    return out


def walk_model(model: type[BaseModel]) -> Walk:
    document = model.model_json_schema(mode="validation")
    uri = f"urn:test:model:{model.__name__}"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    out = Walk()
    _walk(document, registry.resolver(uri), "", out)
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_and_schema_declare_the_same_fields(name: str) -> None:
    from_schema = walk_file(name).entries
    from_model = walk_model(MODELS[name]).entries

    assert sorted(from_schema - from_model) == [], "in the schema only (path, required, default)"
    assert sorted(from_model - from_schema) == [], "in the model only (path, required, default)"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_property_has_a_description(name: str) -> None:
    assert walk_file(name).undocumented == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_objects_are_closed_except_the_cloudevent_envelope(name: str) -> None:
    assert walk_file(name).open_objects == []


def test_walker_sees_nested_and_union_fields() -> None:
    """Guards the walker itself: it must reach deep fields, or the comparisons above prove nothing."""
    task = walk_file("browser.task").entries
    run = walk_file("run.requested").entries

    assert ("actions[]<goto>.url", True, "") in task
    assert ("actions[]<goto>.wait_until", False, '"load"') in task
    assert ("actions[]<set_cookies>.cookies[].domain", False, "null") in task
    assert ("job.steps[].name", True, "") in run
    assert ("event.specversion", True, "") in run
    assert ("actions[]<goto>.url", True, "") in walk_model(MODELS["browser.task"]).entries


def test_walker_notices_a_dropped_field() -> None:
    class Shrunk(BaseModel):
        execution_id: str
        reason: str

    missing = walk_file("execution.cancel").entries - walk_model(Shrunk).entries

    assert ("requested_at", True, "") in missing
