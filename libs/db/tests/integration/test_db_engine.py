"""The pool pings a connection that sat idle, and only such a one (real PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from automation_db import create_engine

pytestmark = pytest.mark.integration


async def _backend_pid(engine: object) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(database_url: str, pid: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_a_dead_idle_connection_is_replaced_before_use(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, ping_after_idle=0.2)
    try:
        first = await _backend_pid(engine)
        await _terminate(database_url, first)
        await asyncio.sleep(0.3)
        second = await _backend_pid(engine)  # no error: the ping found the connection dead
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_reused_at_once_is_not_pinged(database_url: str) -> None:
    """The price of skipping the ping: a connection killed between two quick uses fails once, then is replaced."""
    engine = create_engine(database_url, pool_size=1, ping_after_idle=60)
    try:
        first = await _backend_pid(engine)
        await _terminate(database_url, first)
        await asyncio.sleep(0.1)
        with pytest.raises(DBAPIError):
            await _backend_pid(engine)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()
