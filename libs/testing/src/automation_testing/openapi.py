"""Checks of a service's OpenAPI document: its error responses are problem+json (automation_core.openapi)."""

from __future__ import annotations

import json
from typing import Any

PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
#: Error responses that are no problem document: /readyz answers 503 with its checks.
NOT_PROBLEMS = frozenset({("/readyz", "get", "503")})
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def problem_faults(doc: dict[str, Any]) -> list[str]:
    """What is wrong with ``doc``'s error responses: each 4xx/5xx that is not ``application/problem+json``
    with the Problem schema, and any trace of FastAPI's ``HTTPValidationError``; empty when all is well."""
    faults = [
        f"{method.upper()} {path} {code}: {json.dumps(response.get('content'))}"
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        for code, response in operation["responses"].items()
        if code[:1] in {"4", "5"}
        and (path, method, code) not in NOT_PROBLEMS
        and response.get("content") != PROBLEM_CONTENT
    ]
    schemas = doc.get("components", {}).get("schemas", {})
    faults += [f"components.schemas has {name}" for name in FASTAPI_VALIDATION_SCHEMAS if name in schemas]
    if "HTTPValidationError" in json.dumps(doc):
        faults.append("HTTPValidationError is referred to")
    if "Problem" not in schemas:
        faults.append("components.schemas has no Problem")
    return faults


def statuses(doc: dict[str, Any], method: str, path: str) -> set[str]:
    """The statuses an operation declares."""
    return set(doc["paths"][path][method]["responses"])
