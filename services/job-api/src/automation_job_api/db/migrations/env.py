"""Alembic environment of job-api: everything is done by automation_db.run_env."""

from automation_db import run_env
from automation_job_api.db.tables import metadata

run_env(metadata)
