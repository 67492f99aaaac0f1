"""Run parameters: a job's ``parameters`` is a JSON Schema (draft 2020-12) of one run's parameters.

The one implementation every service uses. job-api checks a job's schema (:func:`check_schema`) and a
manual run's values (:func:`resolve`); the scheduler resolves the parameters of scheduled, backfilled
and event-triggered runs with the same :func:`resolve` (scheduled ones once per job version, through
:func:`resolve_defaults`).

Resolving fills in the ``default`` of every property the run leaves out — also inside nested objects
that the run gives or that have defaults — and then validates the result against the schema, formats
included. Failures are :class:`~automation_contracts.errors.ContractError`, whose ``path`` names the
place at fault: ``parameters.<name>[.<path>]`` for a run's value (``parameters.target.host``), and
``parameters.properties.<name>...`` for the schema itself.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from automation_contracts.errors import ContractError, join_path
from automation_contracts.schema_safety import check_usable, compile_schema

PREFIX = "parameters"
"""Where a job's schema and a run's values sit in a job definition and in ``run.requested``."""
_REQUIRED = re.compile(r"^'([^']*)' is a required property")


def check_schema(schema: Mapping[str, Any], prefix: str = PREFIX) -> None:
    """Raise :class:`ContractError` unless ``schema`` is a usable JSON Schema of an object of parameters.

    Usable as :func:`automation_contracts.schema_safety.check_usable` says (nesting at most 32 deep,
    references local and resolvable, no reference cycle that does not consume input, RE2 patterns);
    its errors (:class:`~automation_contracts.schema_safety.UnusableSchema`) name ``parameters.<place>``.
    """
    check_usable(schema, prefix)
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared]
    if declared is not None and "object" not in types:
        raise ContractError(
            'run parameters are a JSON object, so the schema\'s type must be "object"', join_path(prefix, ["type"])
        )


def declared_names(schema: Mapping[str, Any]) -> frozenset[str]:
    """The parameter names the schema declares (its top-level ``properties``)."""
    properties = schema.get("properties")
    return frozenset(properties) if isinstance(properties, Mapping) else frozenset()


def apply_defaults(schema: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with the defaults of ``schema``'s properties filled in (recursively)."""
    result = copy.deepcopy(dict(values))
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


def _value_path(error: ValidationError) -> list[str | int]:
    """Where in the parameters the error is, naming the missing or unexpected property where there is one."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = _REQUIRED.match(error.message)
        if missing:
            path.append(missing.group(1))
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        declared = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [name for name in instance if name not in declared]
        if len(extra) == 1:
            path.append(extra[0])
    return path


def _first_error(schema: Mapping[str, Any], values: dict[str, Any], prefix: str) -> ValidationError | None:
    # Never fetches a reference and matches patterns in linear time; a schema stored before the checks
    # (or nobody checked) that breaks the validator is an UnusableSchema naming where it is wrong.
    return compile_schema(schema).first_error(values, prefix)


def resolve(schema: Mapping[str, Any], given: Mapping[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The run's parameters: ``given`` with the schema's defaults applied, validated against the schema.

    Raises :class:`ContractError` naming ``<prefix>.<name>[.<path>]`` (the parameter at fault).
    """
    resolved = apply_defaults(schema, given)
    error = _first_error(schema, resolved, prefix)
    if error is not None:
        raise ContractError(error.message, join_path(prefix, _value_path(error)))
    return resolved


def resolve_defaults(schema: Mapping[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The parameters of a run nobody gives any to (a scheduled or backfilled run): the defaults, validated.

    Raises :class:`ContractError` naming the place in the *schema* to fix:
    ``<prefix>.properties.<name>.default`` for a required parameter without a default or a default
    its own schema refuses (``<prefix>.properties.target.properties.host.default`` when nested).
    """
    resolved = apply_defaults(schema, {})
    error = _first_error(schema, resolved, prefix)
    if error is None:
        return resolved
    parts = _value_path(error)
    reason = error.message
    if error.validator == "required" and parts:
        reason = f"parameter {join_path('', parts)!r} is required and has no default"
    raise ContractError(reason, join_path(prefix, _schema_path(schema, parts)))


def _schema_path(schema: Mapping[str, Any], parts: list[str | int]) -> list[str | int]:
    """The schema location of the default that produced the value at ``parts``."""
    path: list[str | int] = []
    current: Any = schema
    for index, part in enumerate(parts):
        properties = current.get("properties") if isinstance(current, Mapping) else None
        declared = isinstance(properties, Mapping) and part in properties
        if not declared and not (index == len(parts) - 1 and isinstance(part, str)):
            break  # inside a default's value (an array item, an undeclared key): the default is at fault
        path += ["properties", part]
        current = properties[part] if declared and isinstance(properties, Mapping) else {}
    return [*path, "default"] if path else path
