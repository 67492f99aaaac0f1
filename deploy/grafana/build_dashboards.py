"""The five Grafana dashboards as code: ``python deploy/grafana/build_dashboards.py`` writes
``deploy/grafana/dashboards/*.json``; ``--check`` exits 1 when a file differs from what this builds
(deploy/tests runs it). Edit the definitions (``platform_boards.py``: overview, scheduler, events;
``worker_boards.py``: executor, browser-pool; shared pieces in ``panels.py``), not the JSON, and rebuild.

Every query names only metrics the services expose (libs/core's common metrics, libs/db's pool gauges
and each service's ``metrics.py``, listed in docs/observability.md) plus Prometheus' own ``up``; deploy/tests and the
end-to-end suite check it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from platform_boards import events, overview, scheduler
from worker_boards import browser_pool, executor

FOLDER = Path(__file__).resolve().parent / "dashboards"

DASHBOARDS = {
    "overview": overview,
    "scheduler": scheduler,
    "executor": executor,
    "browser-pool": browser_pool,
    "events": events,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path = FOLDER / f"{name}.json"
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python deploy/grafana/build_dashboards.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
