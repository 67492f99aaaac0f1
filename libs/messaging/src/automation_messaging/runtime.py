"""The composition root every service's lifespan uses.

:func:`open_runtime` applies the service's migrations (unless ``AUTOMATION_MIGRATE_ON_START=false``),
opens the engine, the broker (topology declared) and the outbox relay, registers the readiness checks,
and on exit closes everything in reverse: consumers first (in-flight handlers finish within the grace
period), then the relay, the broker and the engine. :func:`service_main` is the body of every
``python -m automation_<service>``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from automation_core.health import Readiness
from automation_core.logging import configure_logging, get_logger
from automation_core.metrics import DATABASE_UP
from automation_core.server import run_cli, serve_app
from automation_core.settings import ServiceSettings
from automation_core.tracing import setup_tracing
from automation_db import check_database, create_engine, migrate, session_factory
from automation_db.pools import watch_pool
from automation_messaging.broker import Broker, Publisher
from automation_messaging.consumer import Consumer, Handler, QueueFactory
from automation_messaging.outbox import OutboxRelay

log = get_logger(__name__)


@dataclass
class Runtime:
    """Open infrastructure of one service process."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker
    relay: OutboxRelay | None
    consumers: list[Consumer] = field(default_factory=list)

    @property
    def publisher(self) -> Publisher:
        return self.broker.publisher

    async def consume(
        self,
        queue: QueueFactory,
        handler: Handler,
        *,
        prefetch: int | None = None,
        validate: bool = True,
        accept: Callable[[str], bool] | None = None,
    ) -> Consumer:
        """Start a consumer that is stopped with the runtime (``accept``: a routing-key prefilter)."""
        consumer = Consumer(
            self.broker, queue=queue, handler=handler, prefetch=prefetch, validate=validate, accept=accept
        )
        await consumer.start()
        self.consumers.append(consumer)
        return consumer


@contextlib.asynccontextmanager
async def open_runtime(
    settings: ServiceSettings,
    *,
    readiness: Readiness,
    migrations_dir: Path | None,
    outbox: Table | None,
) -> AsyncIterator[Runtime]:
    """Open the service's infrastructure for the duration of the block."""
    setup_tracing(settings.service_name, settings.otlp_endpoint)
    database_url = settings.database_url.get_secret_value()
    if migrations_dir is not None and settings.migrate_on_start:
        await migrate(database_url, migrations_dir)
        log.info("migrations_applied")
    engine = create_engine(
        database_url,
        pool_size=settings.db_pool_size,
        application_name=settings.service_name,
        ping_after_idle=settings.db_ping_after_idle_seconds,
    )
    watch_pool(settings.service_name, "main", engine)
    broker = Broker(settings)
    relay: OutboxRelay | None = None
    runtime: Runtime | None = None
    try:
        await broker.connect()
        if outbox is not None:
            relay = OutboxRelay(engine, outbox, broker.publisher, settings)
            await relay.start()
        runtime = Runtime(settings, engine, session_factory(engine), broker, relay)

        async def database_check() -> None:
            try:
                await check_database(engine)
            except Exception:
                DATABASE_UP.labels(settings.service_name).set(0)
                raise
            DATABASE_UP.labels(settings.service_name).set(1)

        readiness.add("database", database_check)
        readiness.add("broker", broker.check)
        yield runtime
    finally:
        readiness.clear()
        if runtime is not None:
            for consumer in reversed(runtime.consumers):
                await consumer.stop(settings.shutdown_grace_seconds)
        if relay is not None:
            await relay.stop()
        await broker.close()
        await engine.dispose()
        log.info("runtime_closed")


def service_main(
    argv: Sequence[str] | None,
    *,
    settings_factory: Callable[[], ServiceSettings],
    create_app: Callable[[ServiceSettings], FastAPI],
    migrations_dir: Path,
) -> int:
    """``serve`` runs the app (migrating first); ``migrate`` only applies migrations.

    Settings are read after the arguments are parsed, so ``--help`` works without any configuration.
    """
    fields = getattr(settings_factory, "model_fields", {})
    name = fields["service_name"].default if "service_name" in fields else "service"

    @functools.cache  # read once: the event loop is chosen from it before serve or migrate runs
    def configured() -> ServiceSettings:
        settings = settings_factory()
        configure_logging(settings.service_name, settings.log_level, settings.log_format)
        return settings

    async def serve() -> None:
        settings = configured()
        await serve_app(create_app(settings), settings)

    async def run_migrations() -> None:
        settings = configured()
        await migrate(settings.database_url.get_secret_value(), migrations_dir)
        log.info("migrations_applied")

    return run_cli(
        argv,
        prog=f"automation-{name}",
        serve=serve,
        migrate=run_migrations,
        event_loop=lambda: configured().event_loop,
    )
