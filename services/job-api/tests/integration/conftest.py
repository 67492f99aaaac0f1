"""job-api integration fixtures: the app over this module's own database and vhost, and an AMQP channel.

Test modules are imported in importlib mode, so they cannot import this file; the helpers they share
live in ``jobapi_support`` beside it, made importable here.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from fastapi import FastAPI

from automation_job_api.app import create_app
from automation_job_api.settings import JobApiSettings

sys.path.insert(0, str(Path(__file__).parent))

from jobapi_support import AccountCreds, make_settings, new_account


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def settings(database_url: str, amqp_url: str) -> JobApiSettings:
    return make_settings(database_url, amqp_url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(settings: JobApiSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def account(client: httpx.AsyncClient) -> AccountCreds:
    return await new_account(client)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def amqp(amqp_url: str, app: FastAPI) -> AsyncIterator[AbstractChannel]:
    """A confirming channel on this module's vhost (after the app declared the topology)."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()
