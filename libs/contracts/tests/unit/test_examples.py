"""Every example in proto-schemas/examples is judged as its file name says, by the schema and the model alike."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from automation_contracts import (
    EVENT_MODELS,
    CloudEvent,
    ContractError,
    JobSpec,
    build_event,
    parse_data,
    schemas_dir,
    urn,
    validate_event,
    validator_for,
)

MODELS: dict[str, type[BaseModel]] = {**EVENT_MODELS, "cloudevent": CloudEvent, "job-spec": JobSpec}
EXAMPLES_DIR = schemas_dir() / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*/*.json"))
VALID = [path for path in EXAMPLES if path.name.startswith("valid-")]
INVALID = [path for path in EXAMPLES if path.name.startswith("invalid-")]
NAME = re.compile(r"^(valid|invalid)-[a-z0-9]+(?:[-.][a-z0-9]+)*\.json$")


def _type(path: Path) -> str:
    return path.parent.name.removesuffix(".v1")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _schema_errors(name: str, instance: Any) -> list[str]:
    return [error.message for error in validator_for(urn(name)).iter_errors(instance)]


def _event(name: str, data: Any) -> CloudEvent:
    return build_event(name, source="/tests", data=data)


def test_example_folders_match_the_schemas() -> None:
    folders = {path.name for path in EXAMPLES_DIR.iterdir()}

    assert folders == {f"{name}.v1" for name in MODELS}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_schema_has_two_valid_and_three_invalid_examples(name: str) -> None:
    folder = EXAMPLES_DIR / f"{name}.v1"

    assert len(list(folder.glob("valid-*.json"))) >= 2
    assert len(list(folder.glob("invalid-*.json"))) >= 3
    assert all(NAME.match(path.name) for path in folder.iterdir()), sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("path", VALID, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_valid_example_passes_schema_and_model(path: Path) -> None:
    name, instance = _type(path), _load(path)

    assert _schema_errors(name, instance) == []
    parsed = MODELS[name].model_validate(instance)
    assert _schema_errors(name, parsed.model_dump(mode="json")) == [], "the model's dump left the schema"


@pytest.mark.parametrize("path", INVALID, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_invalid_example_fails_schema_and_model(path: Path) -> None:
    name, instance = _type(path), _load(path)

    assert _schema_errors(name, instance) != []
    with pytest.raises(ValidationError):
        MODELS[name].model_validate(instance)


@pytest.mark.parametrize("path", [p for p in VALID if _type(p) in EVENT_MODELS], ids=lambda p: p.name)
def test_valid_data_passes_the_public_api(path: Path) -> None:
    name = _type(path)
    event = CloudEvent.from_json_bytes(_event(name, _load(path)).to_json_bytes())

    validate_event(event)
    assert isinstance(parse_data(event, EVENT_MODELS[name]), EVENT_MODELS[name])


@pytest.mark.parametrize("path", [p for p in INVALID if _type(p) in EVENT_MODELS], ids=lambda p: p.name)
def test_invalid_data_is_a_contract_error(path: Path) -> None:
    name = _type(path)
    event = _event(name, _load(path))

    with pytest.raises(ContractError) as by_schema:
        validate_event(event)
    with pytest.raises(ContractError) as by_model:
        parse_data(event, EVENT_MODELS[name])
    schema_path, model_path = by_schema.value.path, by_model.value.path
    assert model_path.startswith("data")
    # the same field, or for a cross-field rule of the model (a cookie's url or domain) the object holding it
    assert schema_path == model_path or schema_path.startswith(f"{model_path}.")


@pytest.mark.parametrize("path", [p for p in INVALID if _type(p) == "cloudevent"], ids=lambda p: p.name)
def test_invalid_envelope_is_a_contract_error(path: Path) -> None:
    with pytest.raises(ContractError):
        CloudEvent.from_json_bytes(path.read_bytes())
