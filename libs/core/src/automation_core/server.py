"""Process entry points: ``python -m automation_<service> serve|migrate``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from automation_core.logging import get_logger
from automation_core.settings import EventLoopName, ServiceSettings

log = get_logger(__name__)


STARTED_POLL_SECONDS = 0.1


async def freeze_when_started(server: uvicorn.Server) -> int:
    """Once the server has started (its lifespan too), collect, then move every object left into the
    garbage collector's permanent generation; how many were frozen.

    A service starts with 120,000-170,000 objects (modules, models, routes) that live as long as it
    does, and every full collection walked them all: ~100 ms pauses of job-api's event loop, which spent
    0.52-0.54 s of ~8 s of CPU in full collections over 1,500 runs of ``make bench-executor``, and
    0.25-0.27 s frozen (measured with ``gc.callbacks``).
    Frozen, they are never scanned again (the pattern the :mod:`gc` documentation gives for long-lived
    start-up state). The collection first frees the start-up's garbage, so none of it is kept.
    """
    while not server.started:  # noqa: ASYNC110 - uvicorn.Server has a started flag, no event
        await asyncio.sleep(STARTED_POLL_SECONDS)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc_frozen_after_startup", objects=frozen)
    return frozen


async def serve_app(app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` under uvicorn until SIGINT/SIGTERM; the lifespan drains and closes everything.

    With ``AUTOMATION_GC_FREEZE_AFTER_STARTUP`` (default on), what the start-up made is moved out of
    the garbage collector's reach once the server runs (:func:`freeze_when_started`).
    """
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
    log.info("event_loop_running", implementation=type(asyncio.get_running_loop()).__module__.split(".")[0])
    freezing = asyncio.create_task(freeze_when_started(server)) if settings.gc_freeze_after_startup else None
    try:
        await server.serve()
    finally:
        if freezing is not None:
            freezing.cancel()
    if server.started is False and not server.should_exit:
        raise SystemExit(1)


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``AUTOMATION_EVENT_LOOP`` names (None: asyncio's own).

    ``uvloop`` (libuv) spends less CPU per message, query and pipe than asyncio's selector loop; it is
    installed with the services on Linux and macOS. ``auto`` takes it where it is installed. Its clock
    and timers have millisecond resolution, which is why the scheduler's fire loop defaults to asyncio's.
    """
    if name == "asyncio":
        return None
    try:
        import uvloop  # optional: not on every platform
    except ImportError as exc:
        if name == "uvloop":
            raise SystemExit(f"AUTOMATION_EVENT_LOOP=uvloop, but uvloop cannot be imported: {exc}") from exc
        return None
    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


def run_cli(
    argv: Sequence[str] | None,
    *,
    prog: str,
    serve: Callable[[], Coroutine[Any, Any, None]],
    migrate: Callable[[], Coroutine[Any, Any, None]],
    event_loop: Callable[[], EventLoopName] = lambda: "asyncio",
) -> int:
    """Parse ``serve``/``migrate`` and run the matching coroutine on the loop ``event_loop()`` names.

    ``event_loop`` is called after the arguments are parsed (it may read the configuration).
    """
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog}: an Automation Platform service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="apply migrations, then serve HTTP and consume messages")
    sub.add_parser("migrate", help="apply this service's database migrations and exit")
    args = parser.parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=loop_factory(event_loop())) as runner:
            runner.run(serve() if args.command == "serve" else migrate())
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        problems = "; ".join(
            f"AUTOMATION_{'_'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}" for e in exc.errors()
        )
        print(f"{prog}: invalid configuration: {problems}", file=sys.stderr)
        return 2
    return 0
