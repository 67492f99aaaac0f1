"""The scheduler's FastAPI app and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.settings import ServiceSettings
from automation_messaging import open_runtime
from automation_scheduler.api.backfills import router as backfills_router
from automation_scheduler.api.preview import router as preview_router
from automation_scheduler.api.routes import router
from automation_scheduler.bootstrap import build_scheduler
from automation_scheduler.consumers import JobEventsHandler, JobEventsQueue
from automation_scheduler.db import MIGRATIONS_DIR
from automation_scheduler.db.tables import outbox
from automation_scheduler.executions import ExecutionEventsQueue
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.triggers import TriggerEventsQueue, accept_routing_key

DESCRIPTION = (
    "The trigger engine: keeps a schedule per job from job events, fires each due slot exactly once "
    "across replicas with its misfire, deadline, overlap and max-runs policies (run.requested through the "
    "outbox), fires event triggers, runs backfills, lists schedules, fires and backfills, previews fire times."
)


def create_app(settings: ServiceSettings) -> FastAPI:
    """The scheduler app; infrastructure opens in the lifespan, nothing at import or here."""
    if not isinstance(settings, SchedulerSettings):
        raise TypeError("the scheduler needs SchedulerSettings")
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, readiness=readiness, migrations_dir=MIGRATIONS_DIR, outbox=outbox) as runtime:
            scheduler = build_scheduler(settings, runtime)
            await scheduler.fire_loop.start()
            try:
                readiness.add("fire_loop", scheduler.fire_loop.check)
                await runtime.consume(JobEventsQueue(settings), JobEventsHandler(scheduler.service))
                await runtime.consume(ExecutionEventsQueue(settings), scheduler.executions)
                await runtime.consume(TriggerEventsQueue(settings), scheduler.triggers, accept=accept_routing_key)
                for task in scheduler.tasks:
                    await task.start()
                app.state.scheduler = scheduler
                yield
            finally:
                for task in scheduler.tasks:
                    await task.stop()
                await scheduler.bindings.close()
                await scheduler.fire_loop.stop()

    app = create_service_app(
        settings, title="Automation Platform scheduler", description=DESCRIPTION, lifespan=lifespan, readiness=readiness
    )
    app.include_router(preview_router)
    app.include_router(router)
    app.include_router(backfills_router)
    return app
