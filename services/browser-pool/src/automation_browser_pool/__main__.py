"""``python -m automation_browser_pool serve|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from automation_browser_pool.app import create_app
from automation_browser_pool.db import MIGRATIONS_DIR
from automation_browser_pool.settings import BrowserPoolSettings
from automation_messaging import service_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the browser-pool command line."""
    return service_main(
        argv, settings_factory=BrowserPoolSettings, create_app=create_app, migrations_dir=MIGRATIONS_DIR
    )


if __name__ == "__main__":
    raise SystemExit(main())
