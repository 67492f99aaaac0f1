"""pytest plugin (loaded from the root conftest): real infrastructure fixtures.

- ``infra``: an :class:`~automation_testing.infra.Infra` with a fresh database and vhost for each test
  module, so durable queues left by one module never feed another (about a second per module).
- ``database_url`` / ``amqp_url``: its two URLs.
- ``fresh_outbox``: an engine and an outbox table (``automation_messaging.outbox_table``) in a new
  schema of its own in that database, for tests of code that writes or drains an outbox.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_db import create_engine, schema_metadata
from automation_messaging import outbox_table
from automation_testing.infra import (
    DEFAULT_AMQP_URL,
    DEFAULT_DATABASE_URL,
    Infra,
    fresh_database,
    fresh_vhost,
    require_infra,
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def infra() -> AsyncIterator[Infra]:
    base_db = os.environ.get("AUTOMATION_DATABASE_URL", DEFAULT_DATABASE_URL)
    base_amqp = os.environ.get("AUTOMATION_AMQP_URL", DEFAULT_AMQP_URL)
    require_infra(base_db, base_amqp)
    async with fresh_database(base_db) as db_url, fresh_vhost(base_amqp) as amqp_url:
        yield Infra(database_url=db_url, amqp_url=amqp_url)


@pytest.fixture(scope="module")
def database_url(infra: Infra) -> str:
    return infra.database_url


@pytest.fixture(scope="module")
def amqp_url(infra: Infra) -> str:
    return infra.amqp_url


@pytest_asyncio.fixture
async def fresh_outbox(database_url: str) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    metadata = schema_metadata(f"outbox_{uuid.uuid4().hex[:6]}")
    table = outbox_table(metadata)
    engine = create_engine(database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
    yield engine, table
    await engine.dispose()
