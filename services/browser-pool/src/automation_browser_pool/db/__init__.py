"""browser-pool's database: the ``browser_pool`` schema (tasks, artifacts) and its migrations."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS_DIR"]
