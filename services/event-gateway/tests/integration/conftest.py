"""The event-gateway app over HTTP, in process, against the real PostgreSQL and RabbitMQ: a module's
``client`` (its ``settings`` may be overridden by the module)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from automation_event_gateway.app import create_app
from automation_event_gateway.settings import EventGatewaySettings

ADMIN_TOKEN = "t" * 32
"""The admin token of the app under test (the modules spell it the same)."""


@pytest.fixture(scope="module")
def settings(database_url: str, amqp_url: str) -> EventGatewaySettings:
    return EventGatewaySettings(
        database_url=database_url, amqp_url=amqp_url, env="development", jwt_secret="x" * 32, admin_token=ADMIN_TOKEN
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(settings: EventGatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http
