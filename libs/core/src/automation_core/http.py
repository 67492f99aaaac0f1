"""The HTTP application factory every service uses.

:func:`create_service_app` gives a FastAPI app with problem+json errors (and a 422 for input PostgreSQL
cannot keep: see :mod:`automation_core.storable`), request metrics and logs, a
tracing SERVER span per request, ``/healthz`` (the process alone), ``/readyz`` (its checks: database,
broker) and ``/metrics``. Routers that need a caller declare :data:`CurrentPrincipal`.

The server spans are FastAPI's native OpenTelemetry instrumentation, configured here
(:data:`TELEMETRY`): one SERVER span per request named ``"<METHOD> <route template>"`` (the method alone
when no route matched) with the HTTP semantic-convention attributes (``http.request.method``,
``http.route``, ``http.response.status_code``, ``url.path``, ``url.scheme``, ``server.address``, ...),
status ERROR on a 5xx, and as parent the caller's W3C ``traceparent``. The span is current while the
handler runs, so outbox rows written in the request carry the trace on through the broker.
``/healthz``, ``/readyz`` and ``/metrics`` are counted in the metrics but neither traced nor logged.

The app's OpenAPI document (``/openapi.json``) declares error responses as ``application/problem+json``
(:mod:`automation_core.openapi`): routes list the statuses they answer with
``responses=problems(404, 422, ...)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automation_core import __version__
from automation_core.auth import Authenticator, Principal
from automation_core.errors import install_error_handlers
from automation_core.health import Readiness
from automation_core.logging import get_logger
from automation_core.metrics import BUILD_INFO, HTTP_DURATION, HTTP_REQUESTS, render_metrics
from automation_core.openapi import install_problem_openapi
from automation_core.settings import ServiceSettings
from automation_core.storable import storable_input

log = get_logger(__name__)
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Probed every few seconds: counted in the metrics, neither traced nor logged.
UNTRACED_PATHS = UNAUTHENTICATED_PATHS
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
#: Path parameters copied onto the ``http_request`` log line.
LOGGED_PATH_PARAMS = ("job_id", "execution_id")


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


#: FastAPI's native OpenTelemetry: SERVER spans on the process' tracer provider (set up by
#: :func:`automation_core.tracing.setup_tracing`); no per-operation child spans, no OpenTelemetry metrics
#: or log records (Prometheus and structlog do those), no exporter set-up of its own.
TELEMETRY: TelemetryConfig = {
    "tracing": True,
    "operation_spans": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
    "exclude": _untraced,
}


#: The ``route`` label of a request no route took: a 404 (never a 2xx or a redirect).
UNMATCHED = "unmatched"


class RouteTemplates:
    """The full route template of a request, as the caller sees it, whatever the routers' nesting.

    FastAPI no longer copies an included router's routes into the app: ``scope["route"]`` is the route as
    its own router declared it, without the prefixes of the routers and includes above it (the executor's
    ``/workers/self`` under its ``/api/v1`` router), and the routes an app adds with ``add_route``
    (``/openapi.json``, ``/docs``, ``/docs/oauth2-redirect``, ``/redoc``) set no ``scope["route"]``. The
    public :func:`fastapi.routing.iter_route_contexts` gives every route of the app with its effective
    (full) path: read at the first request, and again when a request names a route not seen then (a
    route added later). A redirect to the same path with(out) its trailing slash is labelled by the route
    it leads to, as the server span's ``http.route`` is; what no route takes is :data:`UNMATCHED`.
    """

    def __init__(self) -> None:
        self._routes: list[BaseRoute] | None = None
        self._count = -1
        #: ``id(original route)`` -> its contexts (one per include of its router), with their templates.
        self._by_route: dict[int, list[tuple[RouteContext, str]]] = {}
        self._all: list[tuple[RouteContext, str]] = []
        #: The routes that are not API routes (an API route always sets ``scope["route"]``).
        self._plain: list[tuple[RouteContext, str]] = []
        #: Routes a fresh read did not list either: not read again for them at every request.
        self._unlisted: set[int] = set()

    def _load(self, routes: list[BaseRoute]) -> None:
        self._routes, self._count = routes, len(routes)
        self._by_route, self._all, self._plain = {}, [], []
        for context in iter_route_contexts(routes):
            template = context.path_format or context.path
            if not template:
                continue
            entry = (context, template)
            self._all.append(entry)
            self._by_route.setdefault(id(context.original_route), []).append(entry)
            if not isinstance(context.original_route, APIRoute):
                self._plain.append(entry)

    def _contexts(self, routes: list[BaseRoute], route: BaseRoute) -> list[tuple[RouteContext, str]]:
        key = id(route)
        if self._routes is not routes or self._count != len(routes):
            self._load(routes)
            self._unlisted.clear()
        if key not in self._by_route and key not in self._unlisted:
            self._load(routes)
            if key not in self._by_route:
                self._unlisted.add(key)
        return self._by_route.get(key, [])

    @staticmethod
    def _first_match(entries: list[tuple[RouteContext, str]], scope: Scope) -> str | None:
        for context, template in entries:
            match, _ = context.matches(scope)
            if match is not Match.NONE:
                return template
        return None

    def template(self, scope: Scope, status: int) -> str:
        """The route template of a finished request (``status``: its response's)."""
        app = scope.get("app")
        routes = getattr(app, "routes", None)
        route = scope.get("route")
        if not isinstance(routes, list):
            return getattr(route, "path", None) or UNMATCHED
        if route is not None:
            entries = self._contexts(routes, route)
            if len(entries) == 1:
                return entries[0][1]
            found = self._first_match(entries, scope)
            return found or getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
        if self._routes is not routes or self._count != len(routes):
            self._load(routes)
        found = self._first_match(self._plain, scope)
        if found is None and 300 <= status < 400 and getattr(getattr(app, "router", None), "redirect_slashes", False):
            path = str(scope.get("path", ""))
            other = dict(scope, path=path.rstrip("/") if path.endswith("/") else path + "/")
            found = self._first_match(self._all, other)
        return found or UNMATCHED


class MetricsMiddleware:
    """Counts and times requests by route template (never by raw path) and logs one ``http_request`` line.

    The template is the full one (:class:`RouteTemplates`). It runs inside FastAPI's server span, so the
    log line carries the request's ``trace_id``/``span_id``.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.templates = RouteTemplates()

    def _template(self, scope: Scope, status: int) -> str:
        try:
            return self.templates.template(scope, status)
        except Exception:  # a label must never turn a response into an error
            log.warning("route_template_failed", path=scope.get("path"), exc_info=True)
            return getattr(scope.get("route"), "path", None) or UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = self._template(scope, status)
            raw_method = str(scope.get("method", "GET")).upper()
            method = raw_method if raw_method in KNOWN_METHODS else "_OTHER"
            elapsed = time.perf_counter() - start
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_DURATION.labels(self.service, method, template).observe(elapsed)
            if scope.get("path") not in UNTRACED_PATHS:
                params = scope.get("path_params") or {}
                log.info(
                    "http_request",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    **{key: str(params[key]) for key in LOGGED_PATH_PARAMS if key in params},
                )


def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.readiness
    return readiness


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def current_principal(
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """The authenticated caller; 401 problem+json otherwise."""
    return await authenticator.authenticate(authorization, x_api_key)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


class ReadinessOut(BaseModel):
    """The answer of ``/readyz`` (200 when every check is ok, 503 otherwise)."""

    status: str = Field(description="ok, or unavailable.")
    service: str
    checks: dict[str, str] = Field(description='Each check: "ok", or "failing: <reason>".')


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    authenticator: Authenticator | None = None,
    readiness: Readiness | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """A FastAPI app wired with the platform's cross-cutting parts (``openapi_tags``: the OpenAPI
    document's tags, with their descriptions)."""
    app = FastAPI(
        title=title,
        description=description,
        version=__version__,
        lifespan=lifespan,
        telemetry=TELEMETRY,
        dependencies=[Depends(storable_input)],
        openapi_tags=openapi_tags,
    )
    app.state.readiness = readiness or Readiness()
    app.state.authenticator = authenticator or Authenticator(settings)
    app.state.settings = settings
    install_error_handlers(app)
    install_problem_openapi(app)
    app.add_middleware(MetricsMiddleware, service=settings.service_name)
    BUILD_INFO.labels(settings.service_name, __version__).set(1)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: database and broker answer (503 with the reasons otherwise)",
        response_model=None,
        responses={
            200: {"model": ReadinessOut, "description": "Every check is ok"},
            503: {"model": ReadinessOut, "description": "A check failed, or the service is still starting"},
        },
    )
    async def readyz(readiness: Annotated[Readiness, Depends(get_readiness)]) -> JSONResponse:
        ok, checks = await readiness.run()
        body = {"status": "ok" if ok else "unavailable", "service": settings.service_name, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def metrics(readiness: Annotated[Readiness, Depends(get_readiness)]) -> Response:
        # The readiness checks keep the connection gauges (automation_database_up) current at every
        # scrape, also where nothing polls /readyz (docker-compose's healthcheck probes /healthz).
        await readiness.run()
        payload, content_type = render_metrics()
        return Response(payload, media_type=content_type)

    return app
