"""Process entry points: ``python -m automation_<service> serve|migrate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from automation_core.settings import ServiceSettings


async def serve_app(app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` under uvicorn until SIGINT/SIGTERM; the lifespan drains and closes everything."""
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
    )
    server = uvicorn.Server(config)
    await server.serve()
    if server.started is False and not server.should_exit:
        raise SystemExit(1)


def run_cli(
    argv: Sequence[str] | None,
    *,
    prog: str,
    serve: Callable[[], Coroutine[Any, Any, None]],
    migrate: Callable[[], Coroutine[Any, Any, None]],
) -> int:
    """Parse ``serve``/``migrate`` and run the matching coroutine."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog}: an Automation Platform service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="apply migrations, then serve HTTP and consume messages")
    sub.add_parser("migrate", help="apply this service's database migrations and exit")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve() if args.command == "serve" else migrate())
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        problems = "; ".join(
            f"AUTOMATION_{'_'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}" for e in exc.errors()
        )
        print(f"{prog}: invalid configuration: {problems}", file=sys.stderr)
        return 2
    return 0
