"""``python -m automation_job_api serve|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from automation_job_api.app import create_app
from automation_job_api.db import MIGRATIONS_DIR
from automation_job_api.settings import JobApiSettings
from automation_messaging import service_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job-api command line."""
    return service_main(argv, settings_factory=JobApiSettings, create_app=create_app, migrations_dir=MIGRATIONS_DIR)


if __name__ == "__main__":
    raise SystemExit(main())
