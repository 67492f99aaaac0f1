"""Alembic environment of the event-gateway: the shared runner with this service's metadata."""

from automation_db import run_env
from automation_event_gateway.db.tables import metadata

run_env(metadata)
