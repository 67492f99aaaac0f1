"""The scheduler's tables, queries and Alembic migrations (schema ``scheduler``)."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR"]
