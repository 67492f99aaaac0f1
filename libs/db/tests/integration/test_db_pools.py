"""Connection pools as gauges: what a scrape reports of a real pool while its connections come and go."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import text

from automation_db import create_engine
from automation_db.pools import watch_pool
from automation_db.statements import open_statement_pool

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
