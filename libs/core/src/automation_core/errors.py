"""One exception base for the platform and its RFC 9457 problem+json rendering.

Domain errors carry their HTTP status, a problem type slug and, when one field is at fault, the
field's dotted path (``steps.0.config.command``). :func:`install_error_handlers` renders them, FastAPI's
request validation errors and unexpected exceptions as ``application/problem+json``. A body FastAPI
cannot read (not JSON, not UTF-8, nested too deep for the parser, an integer of more digits than Python
converts) is a 422 naming ``body`` whose detail says what is wrong and where (:func:`body_problem`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automation_core.logging import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://automation-platform.dev/problems/"
log = get_logger(__name__)


class AutomationError(Exception):
    """Base of every error a service raises on purpose."""

    status: int = 500
    type_slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers


class InvalidInput(AutomationError):
    status, type_slug, title = 422, "invalid-input", "Invalid input"


class NotFound(AutomationError):
    status, type_slug, title = 404, "not-found", "Not found"


class Conflict(AutomationError):
    status, type_slug, title = 409, "conflict", "Conflict"


class Unauthorized(AutomationError):
    status, type_slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "missing or invalid credentials") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="automation"'})


class Forbidden(AutomationError):
    status, type_slug, title = 403, "forbidden", "Forbidden"


class Unavailable(AutomationError):
    status, type_slug, title = 503, "unavailable", "Service unavailable"


UNAVAILABLE_RETRY_AFTER = "2"
"""``Retry-After`` (seconds) of a 503 for a dependency that could not be reached."""
# SQLSTATEs of a connection that failed, a server going away, or one that cannot serve for now: class 08
# (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting
# up, shutting down), class 53 (insufficient resources: 53300 too many connections, 53100 disk full,
# 53200 out of memory), which pass when the server's other clients let go or an operator makes room.
_UNREACHABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")


def find_in_chain(exc: BaseException, matches: Callable[[BaseException], bool]) -> BaseException | None:
    """The first error in ``exc``'s chain (itself, its causes and contexts, a SQLAlchemy error's
    ``orig``) that ``matches``, if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if matches(current):
            return current
        orig = getattr(current, "orig", None)
        pending.extend([current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None])
    return None


def _broken_asyncpg_connection(exc: BaseException) -> bool:
    """asyncpg's own word for a connection that broke under it: ``InternalClientError`` (its protocol
    left mid-operation, "cannot switch to state 12; another operation (2) is in progress", seen when
    PostgreSQL shut down during a statement) or ``InterfaceError: connection is closed``."""
    kind = type(exc)
    if not kind.__module__.startswith("asyncpg"):
        return False
    return kind.__name__ == "InternalClientError" or (
        kind.__name__ == "InterfaceError" and "connection is closed" in str(exc)
    )


def _channel_being_restored(exc: BaseException) -> bool:
    """aiormq's ``ChannelInvalidStateError``: the broker connection under the channel is gone (or is
    being restored), so nothing can be published or acked on it until it is back."""
    kind = type(exc)
    return kind.__module__.startswith("aiormq") and kind.__name__ == "ChannelInvalidStateError"


def _unreachable(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    return (
        isinstance(exc, ConnectionError)
        or _channel_being_restored(exc)
        or getattr(exc, "connection_invalidated", False) is True
        or (isinstance(sqlstate, str) and sqlstate.startswith(_UNREACHABLE_SQLSTATES))
        or _broken_asyncpg_connection(exc)
    )


def unreachable_dependency(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain saying that a service this one depends on could not be reached, if
    any: a refused, reset or broken connection, a PostgreSQL connection error or shutdown, a PostgreSQL
    short of resources (too many connections, disk full, out of memory), an asyncpg connection whose
    protocol broke mid-operation, a connection SQLAlchemy found invalidated, or an AMQP channel whose
    connection is gone.

    Found by duck typing (``sqlstate``, ``connection_invalidated``, asyncpg's and aiormq's class names),
    so this module needs neither asyncpg, SQLAlchemy nor aiormq.
    """
    return find_in_chain(exc, _unreachable)


class Outage:
    """Tries again while a service this one depends on cannot be reached (:func:`unreachable_dependency`).

    :meth:`pause` gives the pause before the next try (``first``, doubling to ``cap``) and raises the
    error again when it is not an outage; a warning ``started`` is logged when the outage starts and
    every ``say_every`` seconds while it lasts, and :meth:`over` logs ``ended`` once it is over (both
    with ``waited_seconds``).
    """

    def __init__(self, *, started: str, ended: str, first: float, cap: float, say_every: float = 60.0) -> None:
        self._started, self._ended = started, ended
        self._first, self._cap, self._say_every = first, cap, say_every
        self._next = first
        self._since: float | None = None
        self._said_at = 0.0

    def pause(self, exc: BaseException) -> float:
        """The pause before trying again; raises ``exc`` again unless a dependency could not be reached."""
        unreachable = unreachable_dependency(exc)
        if unreachable is None:
            raise exc
        now = time.monotonic()
        if self._since is None:
            self._since, self._next, self._said_at = now, self._first, -self._say_every
        if now - self._said_at >= self._say_every:
            self._said_at = now
            log.warning(self._started, error=repr(unreachable), waited_seconds=round(now - self._since, 1))
        pause, self._next = self._next, min(self._next * 2, self._cap)
        return pause

    def over(self) -> None:
        """The last try got through: logs ``ended`` if there was an outage."""
        if self._since is not None:
            log.info(self._ended, waited_seconds=round(time.monotonic() - self._since, 1))
            self._since = None


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_slug: str,
    instance: str | None = None,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build an ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


BODY_FIELD = "body"
#: FastAPI's ``HTTPException`` detail when reading or parsing a request body raised (its cause is chained).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _line_column(document: str, position: int) -> tuple[int, int]:
    line = document.count("\n", 0, position) + 1
    return line, position - document.rfind("\n", 0, position)


def body_problem(cause: BaseException | None) -> str:
    """What is wrong with a request body that could not be read, for a problem's ``detail``."""
    if isinstance(cause, json.JSONDecodeError):
        return f"JSON syntax error at line {cause.lineno}, column {cause.colno}: {cause.msg}"
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"not valid {cause.encoding.upper()}: {cause.reason} at byte {cause.start} "
            f"(0x{cause.object[cause.start : cause.start + 1].hex()}); JSON bodies are UTF-8"
        )
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply to be parsed"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"an integer has too many digits ({cause})"
    if cause is not None:
        return f"could not be read: {type(cause).__name__}: {cause}"
    return "could not be read"


def _validation_entry(error: dict[str, Any], body: Any) -> dict[str, str]:
    """One entry of a 422's ``errors``; FastAPI's JSON syntax error (located by a character offset in
    ``loc``) names ``body`` and says the line and column instead."""
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid" and isinstance(body, str) and len(loc) == 2 and isinstance(loc[1], int):
        line, column = _line_column(body, loc[1])
        reason = (error.get("ctx") or {}).get("error") or error.get("msg", "")
        message = f"JSON syntax error at line {line}, column {column}: {reason}"
        return {"field": BODY_FIELD, "message": message, "type": "json_invalid"}
    return {"field": _loc_to_field(loc), "message": error.get("msg", ""), "type": error.get("type", "")}


class UnreachableDependencyMiddleware:
    """Answers 503 problem+json with ``Retry-After`` when a request fails because a service this one
    depends on could not be reached (:func:`unreachable_dependency`: the database restarting, say).

    That is no bug: the client may retry, and the log gets one warning
    (``request_failed_dependency_unreachable``), not the traceback of an unhandled error. Any other
    error goes on to the 500 handler.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            unreachable = unreachable_dependency(exc)
            if unreachable is None or started:
                raise
            path = str(scope.get("path", ""))
            log.warning("request_failed_dependency_unreachable", path=path, error=repr(unreachable))
            response = problem_response(
                503,
                Unavailable.title,
                f"a service this one depends on could not be reached ({type(unreachable).__name__}); try again shortly",
                type_slug=Unavailable.type_slug,
                instance=path,
                headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
            )
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json (a dependency that could not be reached as 503)."""

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AutomationError)
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            type_slug=exc.type_slug,
            instance=request.url.path,
            field=exc.field,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [_validation_entry(e, exc.body) for e in exc.errors()]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problem_response(
            422,
            "Invalid input",
            f"{first['field'] or 'request'}: {first['message']}",
            type_slug="invalid-input",
            instance=request.url.path,
            field=first["field"],
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            detail = body_problem(exc.__cause__)
            return problem_response(
                422,
                InvalidInput.title,
                f"{BODY_FIELD}: {detail}",
                type_slug=InvalidInput.type_slug,
                instance=request.url.path,
                field=BODY_FIELD,
                errors=[{"field": BODY_FIELD, "message": detail, "type": "body_unreadable"}],
            )
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem_response(
            exc.status_code,
            title,
            str(exc.detail),
            type_slug=title.lower().replace(" ", "-"),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error=repr(exc))
        return problem_response(
            500, "Internal error", "unexpected error; see the service log", type_slug="internal-error"
        )

    app.add_middleware(UnreachableDependencyMiddleware)
    app.add_exception_handler(AutomationError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
