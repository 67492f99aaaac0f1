"""Alembic environment of the scheduler schema."""

from automation_db import run_env
from automation_scheduler.db.tables import metadata

run_env(metadata)
