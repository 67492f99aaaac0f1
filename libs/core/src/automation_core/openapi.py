"""problem+json in every service's OpenAPI document: the error model and the responses routes declare.

Every error a service answers is an RFC 9457 problem document (:mod:`automation_core.errors`): a route
declares the statuses it answers with ``responses=problems(404, 422, ...)``, and
:func:`install_problem_openapi` (called by :func:`automation_core.http.create_service_app`) makes the
document say ``application/problem+json`` with the :class:`Problem` schema for them. FastAPI's own 422
(``HTTPValidationError``, ``application/json``), which no service sends, is replaced by the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from automation_core.errors import PROBLEM_JSON

REF_PREFIX = "#/components/schemas/"
#: FastAPI's 422 model and the model it refers to; neither describes what the services send.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid credentials",
    403: "Authenticated, but not allowed (e.g. an admin-only operation, or the admin token on an account's resource)",
    404: "Not found (or owned by another account)",
    409: "Conflict with the current state (e.g. a name already taken); field names what, when one field does",
    413: "Payload too large",
    415: "Unsupported media type",
    422: (
        "Invalid input; field names the field at fault (e.g. steps.1.config.command, cursor, body) and errors "
        "lists every invalid field"
    ),
    503: (
        "Unavailable: the service is starting or stopping, or a dependency (database, broker) cannot be "
        "reached; try again (Retry-After)"
    ),
}


class FieldError(BaseModel):
    """One invalid field."""

    field: str = Field(description="Dotted path of the field (a parameter, a header, body or a body field).")
    message: str
    type: str | None = Field(
        default=None, description="Kind of validation error, e.g. missing, int_parsing, json_invalid, body_unreadable."
    )
    reason: str | None = Field(
        default=None, description="Why an event was refused (event-gateway), e.g. invalid_envelope, invalid_data."
    )


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="The request path.")
    field: str | None = Field(default=None, description="Dotted path of the field at fault, when one is.")
    errors: list[FieldError] | None = Field(
        default=None, description="Every invalid field (request validation, refused events)."
    )


PROBLEM_REF = {"$ref": REF_PREFIX + Problem.__name__}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route answering problem+json with these statuses (401 always included)."""
    codes = sorted({401, *statuses})
    return {code: {"model": Problem, "description": _DESCRIPTIONS.get(code, "Error")} for code in codes}


def _is_problem(response: dict[str, Any]) -> bool:
    """Whether an error response is a problem document: declared with :class:`Problem` (in whatever media
    type), or FastAPI's 422, or already ``application/problem+json``."""
    content = response.get("content") or {}
    refs = {str((media.get("schema") or {}).get("$ref", "")) for media in content.values()}
    return PROBLEM_JSON in content or bool(
        refs & {REF_PREFIX + Problem.__name__, REF_PREFIX + FASTAPI_VALIDATION_SCHEMAS[0]}
    )


def _problem_schemas() -> dict[str, Any]:
    """:class:`Problem` and :class:`FieldError` as component schemas."""
    schema = Problem.model_json_schema(ref_template=REF_PREFIX + "{model}", mode="serialization")
    defs = schema.pop("$defs", {})
    return {Problem.__name__: schema, **defs}


def _drop_unreferenced(components: dict[str, Any], document: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:  # HTTPValidationError first: it is what refers to ValidationError
        if name not in components:
            continue
        body = components.pop(name)
        if f'"{REF_PREFIX}{name}"' in json.dumps(document):
            components[name] = body  # a model of the service's own of that name


def problem_document(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an OpenAPI document in place: every problem response is ``application/problem+json`` with
    the :class:`Problem` schema, FastAPI's 422 becomes one, and its unused schemas are dropped."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                if str(code)[:1] not in {"4", "5"} or not _is_problem(response):
                    continue
                if str(code) == "422" and response.get("description") == "Validation Error":
                    response["description"] = _DESCRIPTIONS[422]
                # Errors are rendered as problem+json whatever the route's own media type.
                response["content"] = {PROBLEM_JSON: {"schema": dict(PROBLEM_REF)}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, body in _problem_schemas().items():
        components.setdefault(name, body)
    _drop_unreferenced(components, schema, FASTAPI_VALIDATION_SCHEMAS)
    return schema


def install_problem_openapi(app: FastAPI, tags: list[dict[str, Any]] | None = None) -> None:
    """Serve an OpenAPI document whose error responses are ``application/problem+json`` (with ``tags``,
    when given, as the document's tags)."""
    if tags is not None:
        app.openapi_tags = tags
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        app.openapi_schema = problem_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
