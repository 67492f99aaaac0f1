"""The browser-pool application: HTTP API, ``browser-pool.tasks`` consumer and the browser pool.

Start-up order: the Chromium launcher and the warm browsers, then the shared runtime (migrations,
database, broker), the consumer and the retention cleanup. Shutdown runs in reverse: the consumer
stops taking tasks and lets those in flight finish, then the browsers are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from playwright.async_api import Browser

from automation_browser_pool.api import router
from automation_browser_pool.claims import DatabaseClaims
from automation_browser_pool.consumers import BrowserTaskHandler, tasks_queue
from automation_browser_pool.db import MIGRATIONS_DIR
from automation_browser_pool.db.repository import TaskRepository
from automation_browser_pool.pool import BrowserPool
from automation_browser_pool.pool.launcher import ChromiumLauncher
from automation_browser_pool.runner import RunnerOptions, TaskRunner
from automation_browser_pool.service import ArtifactJanitor, BrowserTaskService
from automation_browser_pool.settings import BrowserPoolSettings
from automation_browser_pool.state import BrowserPoolState
from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.settings import ServiceSettings
from automation_messaging import open_runtime


@contextlib.asynccontextmanager
async def open_pool(settings: BrowserPoolSettings) -> AsyncIterator[BrowserPool[Browser]]:
    """The Playwright driver and the warm browsers, for the duration of the block."""
    launcher = ChromiumLauncher(settings.chromium_path, launch_timeout=settings.browser_launch_timeout_seconds)
    await launcher.start()
    try:
        pool = BrowserPool(
            launcher.launch,
            size=settings.browser_pool_size,
            contexts_per_browser=settings.browser_contexts_per_browser,
            recycle_after=settings.browser_recycle_after,
        )
        await pool.start()
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        await launcher.stop()


def create_app(settings: ServiceSettings) -> FastAPI:
    """The browser-pool FastAPI app; nothing opens until its lifespan starts."""
    if not isinstance(settings, BrowserPoolSettings):
        raise TypeError("browser-pool needs BrowserPoolSettings")
    config = settings
    readiness = Readiness()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            contextlib.aclosing(DatabaseClaims(config.database_url.get_secret_value())) as claims,
            open_pool(config) as pool,
            open_runtime(config, readiness=readiness, migrations_dir=MIGRATIONS_DIR, outbox=None) as runtime,
        ):
            repository = TaskRepository(runtime.sessions)
            runner = TaskRunner(
                RunnerOptions(
                    viewport_width=config.browser_viewport_width,
                    viewport_height=config.browser_viewport_height,
                    max_artifact_bytes=config.browser_max_artifact_bytes,
                )
            )
            service = BrowserTaskService(pool, runner, repository, claims)
            janitor = ArtifactJanitor(
                repository,
                retention=timedelta(hours=config.artifact_retention_hours),
                interval=config.artifact_cleanup_interval_seconds,
            )
            app.state.browser_pool = BrowserPoolState(config, pool, service, repository, janitor)
            readiness.add("browsers", pool.check)
            await runtime.consume(
                tasks_queue(queue_type=config.amqp_queue_type, delivery_limit=config.amqp_delivery_limit),
                BrowserTaskHandler(service),
                prefetch=pool.capacity,
            )
            cleanup = asyncio.create_task(janitor.run_forever(), name="artifact-retention")
            try:
                yield
            finally:
                cleanup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cleanup

    app = create_service_app(
        config,
        title="browser-pool",
        description="Playwright on Chromium: browser tasks in fresh contexts of pooled browsers; screenshots and PDFs.",
        lifespan=lifespan,
        readiness=readiness,
    )
    app.include_router(router)
    return app
