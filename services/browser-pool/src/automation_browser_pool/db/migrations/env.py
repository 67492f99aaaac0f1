"""Alembic environment of browser-pool: the shared runner over this service's metadata."""

from automation_browser_pool.db.tables import metadata
from automation_db import run_env

run_env(metadata)
