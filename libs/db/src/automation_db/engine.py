"""Engines, sessions and schema-bound metadata.

Each service declares its tables on ``schema_metadata("<its schema>")`` so that every table, index and
constraint lives in its own schema with predictable names, and timestamps are timezone-aware.

**Dead connections.** A pooled connection that sat idle for ``ping_after_idle`` seconds (default 5) is
pinged when it is checked out; a dead one is replaced before anyone uses it (after a database
restart, or a firewall that dropped an idle connection). A connection checked out again within that
time is not pinged: SQLAlchemy's own ``pool_pre_ping`` pings at every checkout, which is three round
trips with asyncpg (``BEGIN``, ``;``, ``ROLLBACK``) in front of every transaction of a busy service.
A connection that dies while in use fails the statement at hand and is discarded from the pool; the
callers retry (a consumer's message is requeued, an HTTP request answers 503).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.exc import DisconnectionError
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


PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "automation_idle_since"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    application_name: str = "automation",
    ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
) -> AsyncEngine:
    """An asyncpg engine with a bounded pool whose idle connections are pinged before use (see above)."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}},
    )
    ping_idle_connections(engine, ping_after_idle)
    return engine


def ping_idle_connections(engine: AsyncEngine, after: float) -> None:
    """Ping a connection at checkout when it was idle in the pool for ``after`` seconds or more."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < after:
            return  # new, or back in the pool only a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"an idle pooled connection is dead: {exc}") from exc  # the pool retries


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_database(engine: AsyncEngine) -> None:
    """Raises unless the database answers ``SELECT 1``."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
