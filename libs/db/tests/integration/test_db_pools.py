"""Connection pools as gauges: what a scrape reports of a real pool while its connections come and go."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import text

from automation_db import create_engine
from automation_db.pools import watch_pool
from automation_db.statements import checkout, open_statement_pool

pytestmark = pytest.mark.integration


def _sizes(service: str, pool: str) -> tuple[float | None, float | None, float | None]:
    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"service": service, "pool": pool, **labels})

    return (
        value("automation_db_pool_connections", state="in_use"),
        value("automation_db_pool_connections", state="idle"),
        value("automation_db_pool_max_connections"),
    )


async def test_a_statement_pool_reports_its_connections_in_use_and_idle(database_url: str) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    pool = await open_statement_pool(database_url, size=3, service=service, name="hot")
    try:
        assert _sizes(service, "hot") == (0, 1, 3), "one connection opened at start, none in use"
        async with pool.acquire() as first, pool.acquire() as second:
            assert await first.fetchval("SELECT current_setting('application_name')") == f"{service}-hot"
            await second.fetchval("SELECT 1")
            assert _sizes(service, "hot") == (2, 0, 3)
        assert _sizes(service, "hot") == (0, 2, 3)
    finally:
        await pool.close()
    assert _sizes(service, "hot") == (None, None, None), "a closed pool's series are gone"


async def test_the_engines_pool_reports_checkouts_and_its_size_with_overflow(database_url: str) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, pool_size=2)
    watch_pool(service, "main", engine)
    try:
        assert _sizes(service, "main") == (0, 0, 4), "nothing connected yet; pool_size 2 plus as much overflow"
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            assert _sizes(service, "main") == (1, 0, 4)
        assert _sizes(service, "main") == (0, 1, 4)
        exposition = generate_latest(REGISTRY).decode()
        assert f'automation_db_pool_connections{{pool="main",service="{service}",state="idle"}} 1.0' in exposition
    finally:
        await engine.dispose()


async def test_a_statement_pool_connection_that_broke_is_terminated_not_put_back(database_url: str) -> None:
    """The statement pools skip asyncpg's reset, which would have found a broken connection: checkout()
    terminates one that raised a connection error, and the next checkout gets a working one."""
    pool = await open_statement_pool(database_url, size=1, service=f"svc-{uuid.uuid4().hex[:8]}", name="hot")
    pids: list[int] = []

    async def fail(sql: str | None) -> None:
        async with checkout(pool) as conn:
            pids.append(conn.get_server_pid())
            if sql is None:
                raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
            await conn.execute(sql)

    try:
        with pytest.raises(asyncpg.InternalClientError):
            await fail(None)
        with pytest.raises(asyncpg.UniqueViolationError):
            await fail("CREATE TEMP TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1), (1)")
        async with checkout(pool) as conn:
            assert await conn.fetchval("SELECT 1") == 1
            pids.append(conn.get_server_pid())
        broken, kept, again = pids
        assert kept != broken, "a new connection (the pool holds one) after the broken one"
        assert again == kept, "a server error leaves the connection usable: it went back to the pool"
    finally:
        await pool.close()


async def test_a_server_with_no_connection_left_is_an_outage_for_both_kinds_of_pool(database_url: str) -> None:
    """PostgreSQL refusing a connection with 53300 (too many connections: here a role's own limit, as the
    server's ``max_connections`` would) is an outage to wait through, not an error to dead-letter or 500."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from automation_core.errors import unreachable_dependency

    role = f"limited_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    limited = make_url(database_url).set(username=role, password=None).render_as_string(hide_password=False)
    pool = await open_statement_pool(limited, size=2, service=f"svc-{uuid.uuid4().hex[:8]}", name="hot")
    engine = create_engine(limited, pool_size=1)
    try:
        async with pool.acquire() as first:
            await first.fetchval("SELECT 1")
            with pytest.raises(asyncpg.TooManyConnectionsError) as refused:
                async with pool.acquire() as second:
                    await second.fetchval("SELECT 1")
            assert refused.value.sqlstate == "53300"
            assert unreachable_dependency(refused.value) is refused.value
            with pytest.raises(DBAPIError) as wrapped:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            assert unreachable_dependency(wrapped.value) is not None, repr(wrapped.value)
        await pool.close()
        async with engine.connect() as conn:  # the limit's one connection is free again
            assert (await conn.execute(text("SELECT current_user"))).scalar() == role
    finally:
        await engine.dispose()
        pool.terminate()
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
