"""Registered event types' JSON Schemas: checking them at registration, validating data against them.

A registered schema is JSON Schema draft 2020-12. It may ``$ref`` its own ``$defs`` and the platform's
schemas (``urn:automation:schema:...``), nothing else: references are resolved offline, and one that
cannot be resolved is refused when the schema is registered, not when an event arrives. Formats
(``date-time``, ``uuid``, ``uri``, ...) are asserted, as they are for the platform's own messages.

What else is refused (nesting deeper than 32, reference cycles that do not consume input,
``$dynamicAnchor``, patterns RE2 cannot compile) and how validation stays safe (nothing fetched,
patterns matched in linear time) is :mod:`automation_contracts.schema_safety`, shared with job-api's
run parameters. A schema registered before those checks that cannot be used makes every event of its
type a 422 naming ``data`` and saying so, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from automation_contracts import CloudEvent, ContractError, schema_registry, validate_event
from automation_contracts.schema_safety import CompiledSchema, UnusableSchema, check_usable
from automation_contracts.schema_safety import compile_schema as compile_usable
from automation_event_gateway.domain.errors import EventRejected, RejectReason

DIALECT = "https://json-schema.org/draft/2020-12/schema"
LOCAL_BASE = "urn:automation:event-type:"


class InvalidSchema(Exception):
    """A schema offered for registration is not a usable JSON Schema 2020-12; ``field`` is its path."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _join(prefix: str, parts: Iterator[str | int] | list[str | int]) -> str:
    return ".".join([prefix, *map(str, parts)])


def _base_uri(event_type: str, schema: Any) -> str:
    if isinstance(schema, Mapping) and isinstance(schema.get("$id"), str):
        return str(schema["$id"])
    return LOCAL_BASE + event_type


def check_schema(event_type: str, schema: Any) -> None:
    """Refuse anything but a valid, self-contained JSON Schema 2020-12 (InvalidSchema naming the spot)."""
    if not isinstance(schema, Mapping | bool):
        raise InvalidSchema("a JSON Schema is an object or a boolean", "schema")
    if isinstance(schema, Mapping) and schema.get("$schema", DIALECT) != DIALECT:
        raise InvalidSchema(f"only JSON Schema 2020-12 is supported ($schema {DIALECT!r})", "schema.$schema")
    try:
        check_usable(schema, "schema", registry=schema_registry(), base_uri=_base_uri(event_type, schema))
    except UnusableSchema as exc:
        raise InvalidSchema(exc.reason, exc.path) from exc


def compile_schema(event_type: str, schema: Any) -> CompiledSchema:
    """A validator for a registered schema, asserting formats, matching patterns by RE2, fetching nothing."""
    return compile_usable(schema, registry=schema_registry(), base_uri=_base_uri(event_type, schema))


def error_path(error: ValidationError) -> list[str | int]:
    """Where in the data the error is, down to the missing or unexpected property when there is one."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        match = re.match(r"^'([^']*)' is a required property", error.message)
        if match:
            path.append(match.group(1))
    elif error.validator in {"additionalProperties", "unevaluatedProperties"} and isinstance(instance, Mapping):
        match = re.search(r"\('([^']*)' was unexpected\)", error.message)
        if match:
            path.append(match.group(1))
    return path


def validate_data(event: CloudEvent, validator: CompiledSchema | None) -> None:
    """Check ``data`` against the platform's schema of its type, or the registered ``validator``."""
    try:
        validate_event(event)
    except ContractError as exc:
        is_data = exc.path == "data" or exc.path.startswith("data.")
        reason = RejectReason.INVALID_DATA if is_data else RejectReason.INVALID_ENVELOPE
        raise EventRejected(reason, exc.reason, exc.path or "data") from exc
    if validator is None:
        return
    if event.data_base64 is not None:
        raise EventRejected(
            RejectReason.INVALID_DATA,
            f"events of the registered type {event.type!r} carry JSON data, not data_base64",
            "data_base64",
        )
    try:
        error = validator.first_error(event.data, "schema")
    except UnusableSchema as exc:  # registered before the checks it fails: the type's owner must fix it
        raise EventRejected(
            RejectReason.INVALID_DATA,
            f"the registered schema of {event.type!r} cannot be used ({exc}); register a corrected one",
            "data",
        ) from exc
    if error is not None:
        raise EventRejected(RejectReason.INVALID_DATA, error.message, _join("data", error_path(error)))
