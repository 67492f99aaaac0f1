"""Fixtures of the scheduler's integration tests: settings, a broker helper, job event builders and table
reads with time travel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from automation_scheduler.app import create_app
from automation_scheduler.bootstrap import Scheduler
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.testing import Bus, Jobs, Tables

ADMIN_TOKEN = "t" * 32
JWT_SECRET = "x" * 32


@pytest.fixture(scope="module")
def make_settings(database_url: str, amqp_url: str) -> Callable[..., SchedulerSettings]:
    def make(**overrides: Any) -> SchedulerSettings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "amqp_url": amqp_url,
            "env": "development",
            "jwt_secret": JWT_SECRET,
            "admin_token": ADMIN_TOKEN,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return SchedulerSettings(**values)

    return make


@pytest.fixture(scope="module")
def settings(make_settings: Callable[..., SchedulerSettings]) -> SchedulerSettings:
    return make_settings()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(settings: SchedulerSettings) -> AsyncIterator[FastAPI]:
    """One running scheduler (migrated, consuming, firing) for the module."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus(app: FastAPI, amqp_url: str) -> AsyncIterator[Bus]:
    """Opened after the app declared the topology."""
    client = Bus(amqp_url)
    await client.open()
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def tables(app: FastAPI) -> Tables:
    """Reads and time travel on the running app's tables."""
    scheduler: Scheduler = app.state.scheduler
    return Tables(scheduler.engine)
