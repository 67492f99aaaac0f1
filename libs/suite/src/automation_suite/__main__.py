"""``python -m automation_suite up``: migrate and start the five services locally (``make dev``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from automation_suite.supervisor import SERVICES, Suite, SuiteConfig, dev_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="automation-suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="migrate, start all five services and wait; Ctrl-C stops them")
    up.add_argument("--state-dir", type=Path, default=Path(".dev"), help="where secrets and logs are kept")
    up.add_argument("--only", nargs="*", choices=list(SERVICES), help="start only these services")
    args = parser.parse_args(argv)

    config = SuiteConfig(env=dev_environment(args.state_dir), log_dir=args.state_dir / "logs")
    suite = Suite(config, dict.fromkeys(args.only or SERVICES))
    print("applying migrations ...", flush=True)
    try:
        suite.migrate()
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"migrations failed: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    suite.start()
    try:
        suite.wait_ready()
    except (RuntimeError, TimeoutError) as exc:
        print(f"the suite did not start: {exc}", file=sys.stderr, flush=True)
        suite.stop()
        return 1
    token = config.env["AUTOMATION_ADMIN_TOKEN"]
    print("\nAutomation Platform is up:", flush=True)
    for name in suite.processes:
        print(f"  {name:<14} {config.url(name)}   (OpenAPI: {config.url(name)}/docs)", flush=True)
    print(f"\n  admin token    {token}   (kept in {args.state_dir / 'secrets.env'})", flush=True)
    print(f"  logs           {config.log_dir}/\n  Ctrl-C stops everything.\n", flush=True)
    code = 0
    while not stop.wait(0.5):
        dead = suite.dead()
        if dead:
            print(f"service exited: {dead}; stopping the suite", file=sys.stderr, flush=True)
            code = 1
            break
    print("stopping ...", flush=True)
    suite.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
