"""Run parameters: a job's ``parameters`` is a JSON Schema (draft 2020-12) describing them.

:func:`check_parameters_schema` accepts a job's schema; :func:`resolve_parameters` validates the
values of one run against it after filling in the ``default`` of every property the run leaves out
(also inside nested objects the run gives or that have defaults). Errors are :class:`InvalidInput`
naming ``parameters`` (the schema) or ``parameters.<name>`` (a run's value).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from automation_core.errors import InvalidInput


def _dotted(prefix: str, parts: list[str | int]) -> str:
    return ".".join([prefix, *(str(p) for p in parts)])


def check_parameters_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` unless ``schema`` is a valid JSON Schema for an object of parameters."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        field = _dotted("parameters", list(exc.absolute_path))
        raise InvalidInput(f"{field}: not a valid JSON Schema: {exc.message}", field=field) from exc
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared]
    if declared is not None and "object" not in types:
        raise InvalidInput(
            'parameters.type: run parameters are a JSON object, so the schema\'s type must be "object"',
            field="parameters.type",
        )


def apply_defaults(schema: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with the defaults of ``schema``'s properties filled in (recursively)."""
    result = copy.deepcopy(values)
    _fill(schema, result)
    return result


def _fill(schema: Mapping[str, Any], instance: dict[str, Any]) -> None:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        value = instance.get(name)
        if isinstance(value, dict):
            _fill(sub, value)


def _error_path(error: ValidationError) -> list[str | int]:
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = re.match(r"'([^']*)' is a required property", error.message)
        if missing:
            path.append(missing.group(1))
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        declared = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [name for name in instance if name not in declared]
        if len(extra) == 1:
            path.append(extra[0])
    return path


def resolve_parameters(schema: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters with defaults applied; :class:`InvalidInput` naming ``parameters.<name>``."""
    resolved = apply_defaults(schema, values)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(resolved))
    if error is not None:
        field = _dotted("parameters", _error_path(error))
        raise InvalidInput(f"{field}: {error.message}", field=field)
    return resolved
