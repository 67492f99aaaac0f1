"""``python -m automation_event_gateway serve|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from automation_event_gateway.app import create_app
from automation_event_gateway.db import MIGRATIONS_DIR
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging import service_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway's command line."""
    return service_main(
        argv, settings_factory=EventGatewaySettings, create_app=create_app, migrations_dir=MIGRATIONS_DIR
    )


if __name__ == "__main__":
    raise SystemExit(main())
