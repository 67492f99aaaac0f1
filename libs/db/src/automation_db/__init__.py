"""Database access shared by the services: async SQLAlchemy 2 over asyncpg, one schema per service."""

from automation_db.engine import (
    Base,
    async_url,
    check_database,
    create_engine,
    schema_metadata,
    session_factory,
    utcnow,
)
from automation_db.migrations import migrate, run_env, schema_drift

__all__ = [
    "Base",
    "async_url",
    "check_database",
    "create_engine",
    "migrate",
    "run_env",
    "schema_drift",
    "schema_metadata",
    "session_factory",
    "utcnow",
]
