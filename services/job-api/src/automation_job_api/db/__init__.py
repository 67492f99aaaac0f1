"""job-api's tables (schema ``job_api``) and migrations."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
