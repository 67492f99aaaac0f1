"""Alembic per service: schema created, version table inside it, concurrent upgrades serialised, drift found."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from automation_db import check_database, create_engine, migrate, schema_drift

HERE = Path(__file__).parent
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _importable_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


MIGRATE_SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from automation_db import migrate
asyncio.run(migrate(sys.argv[1], Path(sys.argv[2]) / "sample_migrations"))
"""


async def test_concurrent_upgrades_create_schema_and_version_table_once(database_url: str) -> None:
    """Three processes (like three replicas starting at once) migrate the same empty schema."""
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", MIGRATE_SCRIPT, database_url, str(HERE))
        for _ in range(3)
    ]
    codes = await asyncio.gather(*(p.wait() for p in procs))
    assert codes == [0, 0, 0]
    await asyncio.gather(*(migrate(database_url, HERE / "sample_migrations") for _ in range(2)))
    conn = await asyncpg.connect(database_url)
    try:
        tables = {
            (r["table_schema"], r["table_name"])
            for r in await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'db_lib_sample'"
            )
        }
        version = await conn.fetchval("SELECT version_num FROM db_lib_sample.alembic_version")
    finally:
        await conn.close()
    assert tables == {("db_lib_sample", "widgets"), ("db_lib_sample", "alembic_version")}
    assert version == "0001"


async def test_models_and_migrations_agree_and_drift_is_reported(database_url: str) -> None:
    await migrate(database_url, HERE / "sample_migrations")
    from sample_models import metadata

    assert await schema_drift(database_url, metadata) == []
    drifted = MetaData(schema="db_lib_sample")
    Table("widgets", drifted, Column("id", Integer, primary_key=True))
    Table("gadgets", drifted, Column("id", Integer, primary_key=True))
    diffs = await schema_drift(database_url, drifted)
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in diffs}
    assert "add_table" in kinds
    assert "remove_column" in kinds


async def test_check_database(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        await check_database(engine)
    finally:
        await engine.dispose()
    broken = create_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(OSError, match=r"Connect call failed|refused"):
            await check_database(broken)
    finally:
        await broken.dispose()
