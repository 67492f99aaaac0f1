"""Alembic per service: version table inside the service's schema, an advisory lock around upgrades.

A service keeps its revisions in ``<package>/db/migrations/versions`` and an ``env.py`` that only calls
:func:`run_env` with its metadata. :func:`migrate` applies them programmatically (the ``migrate`` command
and the start of ``serve``); :func:`schema_drift` lists differences between models and the migrated
database, for the test that keeps them in step.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from automation_db.engine import async_url

# Alembic keeps its `context` proxy in module globals: one upgrade at a time per process. Replicas in
# separate processes are serialised by the PostgreSQL advisory lock instead.
_PROCESS_LOCK = threading.Lock()
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"


def _schema_of(metadata: MetaData) -> str:
    if not metadata.schema:
        raise ValueError("service metadata must be bound to a schema")
    return metadata.schema


def _include_name(schema: str) -> Any:
    def include(name: str | None, type_: str, _parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return not (type_ == "table" and name == "alembic_version")

    return include


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    """An Alembic config for one service's migrations folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("timezone", "UTC")
    cfg.attributes["database_url"] = database_url
    return cfg


async def migrate(database_url: str, migrations_dir: Path, revision: str = "head") -> None:
    """Upgrade the service's schema to ``revision`` (Alembic runs in a worker thread with its own loop)."""
    cfg = alembic_config(migrations_dir, database_url)

    def upgrade() -> None:
        with _PROCESS_LOCK:
            command.upgrade(cfg, revision)

    await asyncio.to_thread(upgrade)


def _run_sync(connection: Connection, metadata: MetaData) -> None:
    schema = _schema_of(metadata)
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"automation-migrate:{schema}"})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=_include_name(schema),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(database_url: str, metadata: MetaData) -> None:
    engine = create_async_engine(async_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_sync, metadata)
    finally:
        await engine.dispose()


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``env.py``: run the migrations online, in one locked transaction."""
    database_url = context.config.attributes.get("database_url")
    if not database_url:
        raise RuntimeError("run migrations through automation_db.migrate (database_url missing)")
    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    asyncio.run(_run_online(database_url, metadata))


async def schema_drift(database_url: str, metadata: MetaData) -> list[Any]:
    """Differences between ``metadata`` and the migrated schema (empty when they agree)."""
    schema = _schema_of(metadata)
    engine = create_async_engine(async_url(database_url), poolclass=NullPool)

    def compare(connection: Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": _include_name(schema),
                "compare_type": True,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(ctx, metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()
