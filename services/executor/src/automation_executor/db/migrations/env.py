"""Alembic environment of the executor schema."""

from automation_db import run_env
from automation_executor.db.tables import metadata

run_env(metadata)
