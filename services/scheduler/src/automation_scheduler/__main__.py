"""``python -m automation_scheduler serve|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from automation_messaging import service_main
from automation_scheduler.app import create_app
from automation_scheduler.db import MIGRATIONS_DIR
from automation_scheduler.settings import SchedulerSettings


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scheduler (``serve``) or apply its migrations (``migrate``)."""
    return service_main(argv, settings_factory=SchedulerSettings, create_app=create_app, migrations_dir=MIGRATIONS_DIR)


if __name__ == "__main__":
    raise SystemExit(main())
