"""Engines, sessions and schema-bound metadata.

Each service declares its tables on ``schema_metadata("<its schema>")`` so that every table, index and
constraint lives in its own schema with predictable names, and timestamps are timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


def async_url(url: str) -> str:
    """``postgresql://`` (the documented form) to SQLAlchemy's asyncpg dialect URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("AUTOMATION_DATABASE_URL must be a postgresql:// URL")


def schema_metadata(schema: str) -> MetaData:
    """MetaData bound to ``schema`` with the platform's naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    """Abstract base: subclasses set ``metadata = schema_metadata(...)``; datetimes are timezone-aware."""

    __abstract__ = True
    type_annotation_map = {datetime: DateTime(timezone=True)}


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "automation") -> AsyncEngine:
    """An asyncpg engine with a bounded pool and pre-ping (reconnects after a database restart)."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_database(engine: AsyncEngine) -> None:
    """Raises unless the database answers ``SELECT 1``."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
