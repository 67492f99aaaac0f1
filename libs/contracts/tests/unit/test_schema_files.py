"""The files of proto-schemas/ are well-formed, named by their $id, and match EVENT_MODELS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from automation_contracts import EVENT_MODELS, dataschema_for, load_schemas, schemas_dir, urn

BUILDING_BLOCKS = {"cloudevent", "job-spec"}
"""Schemas that are not message types of their own."""

SCHEMA_FILES = sorted(schemas_dir().glob("*.schema.json"))


def _name(path: Path) -> str:
    return path.name.removesuffix(".v1.schema.json")


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _bundled(name: str) -> dict[str, Any]:
    """How a building block appears inside another schema's $defs."""
    return {key: value for key, value in _load(schemas_dir() / f"{name}.v1.schema.json").items() if key[0] != "$"}


def test_the_schema_folder_is_found_and_full() -> None:
    assert schemas_dir().name == "proto-schemas"
    assert len(SCHEMA_FILES) == len(EVENT_MODELS) + len(BUILDING_BLOCKS)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = _load(path)

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema.get("title")
    assert schema.get("description")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_id_matches_file_name(path: Path) -> None:
    assert path.name.endswith(".v1.schema.json")
    assert _load(path)["$id"] == urn(_name(path)) == f"urn:automation:schema:{_name(path)}:v1"


def test_every_message_type_has_a_schema_file_and_every_file_a_type() -> None:
    names = {_name(path) for path in SCHEMA_FILES}

    assert names - BUILDING_BLOCKS == set(EVENT_MODELS)


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_dataschema_names_a_loaded_schema(event_type: str) -> None:
    schema_id = dataschema_for(event_type)

    assert schema_id is not None
    assert schema_id in load_schemas()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_schema_stands_alone(path: Path) -> None:
    """Only local refs: AsyncAPI tools and other teams' validators can read each file on its own."""
    refs = _refs(_load(path))

    assert [ref for ref in refs if not ref.startswith("#/")] == []


@pytest.mark.parametrize(
    ("name", "bundles"),
    [
        ("job.created", {"JobSpec": "job-spec"}),
        ("job.updated", {"JobSpec": "job-spec"}),
        ("run.requested", {"JobSpec": "job-spec", "CloudEvent": "cloudevent"}),
    ],
)
def test_bundled_copies_equal_their_source_file(name: str, bundles: dict[str, str]) -> None:
    defs = _load(schemas_dir() / f"{name}.v1.schema.json")["$defs"]

    for def_name, source in bundles.items():
        assert defs[def_name] == _bundled(source), f"copy {source}.v1.schema.json into $defs.{def_name} of {name}"


@pytest.mark.parametrize("fmt", ["uuid", "date-time", "uri", "uri-reference"])
def test_formats_are_really_checked(fmt: str) -> None:
    """jsonschema skips formats whose checker library is missing; these must not be skipped."""
    assert fmt in Draft202012Validator.FORMAT_CHECKER.checkers
    assert not Draft202012Validator.FORMAT_CHECKER.conforms("not a value of any format ::", fmt)
