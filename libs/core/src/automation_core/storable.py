"""Refuse, with a 422 naming the field, request input that PostgreSQL cannot keep, or that the
platform's messages could not carry (JSON nested deeper than :data:`MAX_JSON_DEPTH` levels).

PostgreSQL text and JSONB refuse the NUL character (U+0000), and JSONB has no NaN or Infinity. Python's
JSON parser accepts ``NaN``, ``Infinity`` and ``-Infinity`` (they are not JSON), and a string may hold
``\\u0000``. Left alone, such input reached the database and failed there with a 500, or was quietly
written as ``null`` (a NaN in a job's ``http`` body). :func:`storable_input`, a dependency of every
route of a service app, checks the path parameters, the query parameters and a JSON body first.

A route that reads and checks its body itself (event-gateway's ``POST /events``, which streams it
against a size limit and answers in its own terms) is marked with :func:`checks_its_own_body`; its path
and query are still checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request

from automation_core.errors import InvalidInput

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (U+0000) characters"
F = TypeVar("F", bound=Callable[..., Any])
_OWN_BODY = "__checks_its_own_body__"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A body without these holds neither a NUL nor a non-finite number, so most bodies skip the parse: the
# escape of NUL, the constants, and a number too large for a float (1e999, or 309 digits before a point).
_SUSPECT = re.compile(rb"\\u0000|NaN|Infinity|[0-9][eE]\+?[0-9]{3}|[0-9]{309}")
MAX_JSON_DEPTH = 100
"""The deepest nesting of objects and arrays a JSON body may have (the body itself is level 1). The
platform's messages carry such values a few levels down (a step's ``config`` inside ``run.requested``),
and its consumers parse at most ~200 levels: a value accepted here must stay readable everywhere."""


class _NonFinite:
    """Where a ``NaN`` or ``Infinity`` stood in the parsed body."""

    def __init__(self, text: str) -> None:
        self.text = text


def checks_its_own_body(endpoint: F) -> F:
    """Mark a route whose handler reads and checks its body itself: :func:`storable_input` leaves it."""
    setattr(endpoint, _OWN_BODY, True)
    return endpoint


async def storable_input(request: Request) -> None:
    """Refuse NUL characters in the path and query parameters and in a JSON body, and non-finite numbers
    in a JSON body, with an :class:`InvalidInput` naming the parameter or the field (``steps.0.config.json.v``)."""
    for name, value in request.path_params.items():
        if NUL in str(value):
            raise InvalidInput(f"{name}: {NUL_MESSAGE}", field=name)
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            field = name.replace(NUL, "\\u0000")
            raise InvalidInput(f"{field}: {NUL_MESSAGE}", field=field)
    if request.method not in _BODY_METHODS or not _is_json(request.headers.get("content-type")):
        return
    route = request.scope.get("route")
    if getattr(getattr(route, "endpoint", None), _OWN_BODY, False):
        return
    body = await request.body()
    if _SUSPECT.search(body) or body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:
        try:
            value = json.loads(body, parse_constant=_NonFinite)
        except (ValueError, RecursionError):
            return  # not JSON (or too deep to parse): FastAPI's own validation says so
        check_value(value)


def _invalid_input(message: str, field: str | None) -> Exception:
    return InvalidInput(f"{field or 'body'}: {message}", field=field)


def check_value(
    value: Any,
    root: str = "",
    *,
    max_depth: int = MAX_JSON_DEPTH,
    refuse: Callable[[str, str | None], Exception] = _invalid_input,
) -> None:
    """Raise at the first NUL (in a string or a key) or non-finite number of ``value``, or at the first
    object or array nested deeper than ``max_depth`` levels: ``refuse(message, field)`` (an
    :class:`InvalidInput` naming the field, unless the caller answers in its own terms)."""
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        current, path, depth = stack.pop()
        field = path or None
        if depth > max_depth and isinstance(current, Mapping | list | tuple):
            raise refuse(f"nested deeper than {max_depth} levels", field)
        if isinstance(current, str):
            if NUL in current:
                raise refuse(NUL_MESSAGE, field)
        elif isinstance(current, _NonFinite):
            raise refuse(f"{current.text} is not a JSON number; numbers must be finite", field)
        elif isinstance(current, float):
            if not math.isfinite(current):  # 1e999 parses as inf
                raise refuse("numbers must be finite", field)
        elif isinstance(current, Mapping):
            if any(NUL in str(key) for key in current):
                raise refuse(f"keys {NUL_MESSAGE}", field)
            # pushed last to first, so that the first fault in the document is the one named
            stack.extend(
                (item, f"{path}.{key}" if path else str(key), depth + 1)
                for key, item in reversed(list(current.items()))
            )
        elif isinstance(current, list | tuple):
            items = list(enumerate(current))
            stack.extend(
                (item, f"{path}.{index}" if path else str(index), depth + 1) for index, item in reversed(items)
            )


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this type as JSON (it does when no type is given)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in {"", "application/json"} or media.endswith("+json")
