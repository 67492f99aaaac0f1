"""problem+json in the OpenAPI document: the error model and the responses routes declare."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from automation_core.errors import PROBLEM_JSON

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid credentials",
    403: "Authenticated, but not allowed (e.g. the admin token on an account's resource)",
    404: "Not found (or owned by another account)",
    409: "Conflict, e.g. a name already taken (field names it)",
    422: "Invalid input; field names the field at fault (e.g. steps.1.config.command)",
    503: "Unavailable, e.g. the broker is down or the service is starting",
}


class FieldError(BaseModel):
    """One invalid field."""

    field: str
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="The request path.")
    field: str | None = Field(default=None, description="Dotted path of the field at fault, when one is.")
    errors: list[FieldError] | None = Field(default=None, description="Every invalid field (request validation).")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route answering problem+json with these statuses (401 always included)."""
    codes = sorted({401, *statuses})
    return {code: {"model": Problem, "description": _DESCRIPTIONS.get(code, "Error")} for code in codes}


def install_problem_openapi(app: FastAPI, tags: list[dict[str, Any]]) -> None:
    """Serve an OpenAPI document whose error responses are ``application/problem+json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes, tags=tags
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for code, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if str(code)[:1] in {"4", "5"} and content:
                        # Errors are rendered as problem+json whatever the route's own media type.
                        response["content"] = {PROBLEM_JSON: next(iter(content.values()))}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
