"""Finding, loading and compiling the JSON Schemas of ``proto-schemas/``.

Each message schema stands alone: the shared parts (JobSpec, the CloudEvent envelope) are bundled
into its ``$defs`` as verbatim copies of ``job-spec.v1.schema.json`` and ``cloudevent.v1.schema.json``
(a unit test keeps the copies equal). All files are still loaded into one ``referencing.Registry``
under their ``$id`` URNs (``urn:automation:schema:<name>:v1``), so a ``$ref`` by URN resolves
offline and nothing is ever fetched. Loading and compiling happen once per process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from automation_contracts.errors import ContractError
from automation_contracts.schema_safety import FORMAT_CHECKER, Validator

SCHEMAS_DIR_ENV = "AUTOMATION_SCHEMAS_DIR"
URN_PREFIX = "urn:automation:schema:"
SCHEMA_SUFFIX = ".schema.json"


def schemas_dir() -> Path:
    """Where the schema files are.

    ``$AUTOMATION_SCHEMAS_DIR`` when set; else the first ``proto-schemas`` directory walking up from
    this package (a source checkout); else the copy packaged in the wheel.
    """
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    if configured:
        return Path(configured)
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        candidate = parent / "proto-schemas"
        if candidate.is_dir():
            return candidate
    packaged = here / "schemas"
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(f"no proto-schemas directory found; set {SCHEMAS_DIR_ENV}")


def urn(name: str, major: int = 1) -> str:
    """The ``$id`` of schema ``name`` (a message type, or ``cloudevent``/``job-spec``) at a major version."""
    return f"{URN_PREFIX}{name}:v{major}"


@cache
def load_schemas() -> Mapping[str, Mapping[str, Any]]:
    """Every schema file, by its ``$id``."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for path in sorted(schemas_dir().glob(f"*{SCHEMA_SUFFIX}")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        schemas[schema["$id"]] = schema
    return schemas


@cache
def schema_registry() -> Registry[Any]:
    """A registry holding every schema under its ``$id``, for offline ``$ref`` resolution."""
    resources = [
        (schema_id, Resource.from_contents(schema, default_specification=DRAFT202012))
        for schema_id, schema in load_schemas().items()
    ]
    return Registry().with_resources(resources).crawl()


@cache
def validator_for(schema_id: str) -> Draft202012Validator:
    """A validator for the schema with ``$id`` ``schema_id``, checking formats; ContractError if unknown.

    Patterns are matched by RE2 (linear time), as in users' schemas (:mod:`.schema_safety`).
    """
    schema = load_schemas().get(schema_id)
    if schema is None:
        raise ContractError(f"unknown schema {schema_id!r}", "dataschema")
    return cast(Draft202012Validator, Validator(schema, registry=schema_registry(), format_checker=FORMAT_CHECKER))
