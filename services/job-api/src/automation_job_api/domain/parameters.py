"""Run parameters: a job's ``parameters`` is a JSON Schema (draft 2020-12) describing them.

The rules are :mod:`automation_contracts.parameters`, which the scheduler uses for scheduled,
backfilled and event-triggered runs too; here their failures become :class:`InvalidInput` naming
``parameters...`` (the schema, or a run's value).

- :func:`check_parameters_schema`: the job's schema is a valid JSON Schema of an object;
- :func:`resolve_parameters`: a run's values with the defaults of every property it leaves out (also
  inside nested objects), validated against the schema (``parameters.<name>`` names the value at fault);
- :func:`check_unattended_defaults`: a job whose runs nobody gives parameters to (it has a schedule)
  must have defaults that validate: every required parameter has one (names
  ``parameters.properties.<name>.default``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automation_contracts import parameters
from automation_contracts.errors import ContractError
from automation_core.errors import InvalidInput


def _invalid(error: ContractError, detail: str = "") -> InvalidInput:
    return InvalidInput(f"{error.path}: {detail}{error.reason}", field=error.path)


def check_parameters_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` unless ``schema`` is a valid JSON Schema for an object of parameters."""
    try:
        parameters.check_schema(schema)
    except ContractError as exc:
        raise _invalid(exc) from exc


def resolve_parameters(schema: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters with defaults applied; :class:`InvalidInput` naming ``parameters.<name>``."""
    try:
        return parameters.resolve(schema, values)
    except ContractError as exc:
        raise _invalid(exc) from exc


def check_unattended_defaults(schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` unless a run given no parameters (a scheduled one) gets valid ones."""
    try:
        parameters.resolve_defaults(schema)
    except ContractError as exc:
        raise _invalid(exc, "a job with a schedule runs with its parameters' defaults: ") from exc
