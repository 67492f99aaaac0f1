"""The gateway's tables (schema ``event_gateway``), repositories and Alembic migrations."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR"]
