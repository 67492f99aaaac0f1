"""The executor's database: the ``executor`` schema (attempts, outbox) and its Alembic migrations."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
