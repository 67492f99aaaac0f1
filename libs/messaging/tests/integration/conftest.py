"""Fixtures shared by the messaging integration tests: a connected broker for the module's ``settings``,
and an outbox table in a schema of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_core.settings import ServiceSettings
from automation_db import create_engine, schema_metadata
from automation_messaging import Broker, outbox_table


@pytest.fixture
async def broker(settings: ServiceSettings) -> AsyncIterator[Broker]:
    """Connected with the test module's ``settings`` (the topology declared)."""
    connected = Broker(settings)
    await connected.connect()
    yield connected
    await connected.close()


@pytest.fixture
async def fresh_outbox(database_url: str) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    """An engine and an ``outbox`` table in a new schema of its own."""
    metadata = schema_metadata(f"outbox_{uuid.uuid4().hex[:6]}")
    table = outbox_table(metadata)
    engine = create_engine(database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
    yield engine, table
    await engine.dispose()
