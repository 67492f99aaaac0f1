"""Registered event types' JSON Schemas: checking them at registration, validating data against them.

A registered schema is JSON Schema draft 2020-12. It may ``$ref`` its own ``$defs`` and the platform's
schemas (``urn:automation:schema:...``), nothing else: references are resolved offline, and one that
cannot be resolved is refused when the schema is registered, not when an event arrives. Formats
(``date-time``, ``uuid``, ``uri``, ...) are asserted, as they are for the platform's own messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from automation_contracts import CloudEvent, ContractError, schema_registry, validate_event
from automation_event_gateway.domain.errors import EventRejected, RejectReason

DIALECT = "https://json-schema.org/draft/2020-12/schema"
LOCAL_BASE = "urn:automation:event-type:"
DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
"""Keywords whose values are instances, not schemas: a ``$ref`` inside them is data."""


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


def _registry_with(event_type: str, schema: Any) -> tuple[Registry[Any], str]:
    base = _base_uri(event_type, schema)
    resource: Resource[Any] = Resource.from_contents(schema, default_specification=DRAFT202012)
    return schema_registry().with_resource(base, resource).crawl(), base


def _references(schema: Any, base: str, path: list[str | int]) -> Iterator[tuple[str, str, list[str | int]]]:
    """Every (base URI, reference, path) in ``schema``, following ``$id`` changes of base."""
    if isinstance(schema, Mapping):
        if isinstance(schema.get("$id"), str) and path:
            base = urljoin(base, schema["$id"])
        for key, value in schema.items():
            if key in {"$ref", "$dynamicRef"} and isinstance(value, str):
                yield base, value, [*path, key]
            elif key not in DATA_KEYWORDS:
                yield from _references(value, base, [*path, key])
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _references(item, base, [*path, index])


def check_schema(event_type: str, schema: Any) -> None:
    """Refuse anything but a valid, self-contained JSON Schema 2020-12 (InvalidSchema naming the spot)."""
    if not isinstance(schema, Mapping | bool):
        raise InvalidSchema("a JSON Schema is an object or a boolean", "schema")
    if isinstance(schema, Mapping) and schema.get("$schema", DIALECT) != DIALECT:
        raise InvalidSchema(f"only JSON Schema 2020-12 is supported ($schema {DIALECT!r})", "schema.$schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(exc.message, _join("schema", list(exc.absolute_path))) from exc
    registry, base = _registry_with(event_type, schema)
    for ref_base, ref, path in _references(schema, base, []):
        try:
            registry.resolver(base_uri=ref_base).lookup(ref)
        except Unresolvable as exc:
            raise InvalidSchema(
                f"cannot resolve {ref!r}: only local references and the platform's schemas are allowed",
                _join("schema", path),
            ) from exc


def compile_schema(event_type: str, schema: Any) -> Draft202012Validator:
    """A validator for a registered (already checked) schema, asserting formats."""
    registry, _ = _registry_with(event_type, schema)
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


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


def validate_data(event: CloudEvent, validator: Draft202012Validator | None) -> None:
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
    error = best_match(validator.iter_errors(event.data))
    if error is not None:
        raise EventRejected(RejectReason.INVALID_DATA, error.message, _join("data", error_path(error)))
