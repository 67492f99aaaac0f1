"""The FastAPI application of the event-gateway and its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from automation_core.http import create_service_app
from automation_core.settings import ServiceSettings
from automation_event_gateway.api import router
from automation_event_gateway.bootstrap import build_gateway
from automation_event_gateway.db import MIGRATIONS_DIR
from automation_event_gateway.db.tables import outbox
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging import open_runtime

DESCRIPTION = (
    "HTTP ingress for CloudEvents 1.0 (structured, batch and binary modes), the history of every event "
    "seen on automation.events, and a small registry of event types and their JSON Schemas."
)


def create_app(settings: ServiceSettings) -> FastAPI:
    """The gateway's app; its lifespan opens the runtime, starts the history consumer and closes it all."""
    if not isinstance(settings, EventGatewaySettings):
        raise TypeError("create_app needs EventGatewaySettings")
    gateway_settings = settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(
            gateway_settings, readiness=app.state.readiness, migrations_dir=MIGRATIONS_DIR, outbox=outbox
        ) as runtime:
            gateway = build_gateway(gateway_settings, runtime.sessions, runtime.relay)
            if gateway_settings.events_record_history:
                await runtime.consume(gateway.history.declare, gateway.history.handle)
            app.state.gateway = gateway
            try:
                yield
            finally:
                app.state.gateway = None

    app = create_service_app(
        gateway_settings, title="Automation Platform event-gateway", description=DESCRIPTION, lifespan=lifespan
    )
    app.include_router(router)
    return app
