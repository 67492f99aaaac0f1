"""The pool pings a connection that sat idle, and only such a one (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_db import create_engine

pytestmark = pytest.mark.integration


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


@contextlib.asynccontextmanager
async def _killed_after_first_use(database_url: str, ping_after_idle: float) -> AsyncIterator[tuple[AsyncEngine, int]]:
    """A one-connection engine whose connection the server terminated after its first use, and its pid."""
    engine = create_engine(database_url, pool_size=1, ping_after_idle=ping_after_idle)
    try:
        first = await _backend_pid(engine)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", first)
        finally:
            await conn.close()
        yield engine, first
    finally:
        await engine.dispose()


async def test_a_dead_idle_connection_is_replaced_before_use(database_url: str) -> None:
    async with _killed_after_first_use(database_url, 0.2) as (engine, first):
        await asyncio.sleep(0.3)
        assert await _backend_pid(engine) != first  # no error: the ping found the connection dead


async def test_a_connection_reused_at_once_is_not_pinged(database_url: str) -> None:
    """The price of skipping the ping: a connection killed between two quick uses fails once, then is replaced."""
    async with _killed_after_first_use(database_url, 60) as (engine, first):
        await asyncio.sleep(0.1)
        with pytest.raises(DBAPIError):
            await _backend_pid(engine)
        assert await _backend_pid(engine) != first
