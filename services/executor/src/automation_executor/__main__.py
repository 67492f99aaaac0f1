"""``python -m automation_executor serve|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from automation_core.settings import ServiceSettings
from automation_executor.app import create_app
from automation_executor.db import MIGRATIONS_DIR
from automation_executor.settings import ExecutorSettings
from automation_messaging import service_main


def _create_app(settings: ServiceSettings) -> FastAPI:
    assert isinstance(settings, ExecutorSettings)
    return create_app(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the executor's command line."""
    return service_main(argv, settings_factory=ExecutorSettings, create_app=_create_app, migrations_dir=MIGRATIONS_DIR)


if __name__ == "__main__":
    raise SystemExit(main())
