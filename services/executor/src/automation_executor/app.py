"""The executor app: HTTP API plus the ``executor.runs`` consumer, wired in one lifespan.

The lifespan opens the runtime (migrations, database, broker, outbox relay), declares the retry delay
queues, builds the composition (pool, attempt use cases, child runner, handler) and consumes
``executor.runs`` with prefetch = concurrency. On shutdown it stops consuming, lets running executions
finish within ``AUTOMATION_SHUTDOWN_GRACE_SECONDS``, cancels the rest (their children are killed and
their messages handed back unacknowledged, so they are delivered again), and lets the runtime close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aio_pika.abc import AbstractChannel, AbstractQueue
from fastapi import FastAPI

from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.logging import get_logger
from automation_executor.api import api_router
from automation_executor.consumers import RunRequestHandler
from automation_executor.db import MIGRATIONS_DIR
from automation_executor.db.tables import outbox
from automation_executor.pool import WorkerPool, default_worker_id
from automation_executor.retry import declare_retry_ladder
from automation_executor.runner import ChildRunner
from automation_executor.service import AttemptService
from automation_executor.settings import ExecutorSettings
from automation_executor.state import ExecutorState
from automation_messaging import Consumer, open_runtime
from automation_messaging.topology import EXECUTOR_RUNS, WORK_QUEUES, declare_work_queue

log = get_logger(__name__)
ABORT_WAIT_SECONDS = 10.0
"""How long cancelled executions get to kill their children and hand their messages back."""


async def drain(consumer: Consumer, pool: WorkerPool, grace: float) -> None:
    """Stop consuming, wait up to ``grace`` for running executions, cancel the rest."""
    pool.draining = True
    await consumer.cancel()
    log.info("executor_draining", running=pool.running, grace_seconds=grace)
    if await pool.wait_idle(grace):
        return
    cancelled = pool.abort_all()
    log.warning("executions_aborted_at_shutdown", count=cancelled)
    if not await pool.wait_idle(ABORT_WAIT_SECONDS):
        log.error("executions_still_running_after_abort", count=pool.running)


def create_app(settings: ExecutorSettings) -> FastAPI:
    """The executor's FastAPI app; nothing runs until its lifespan starts."""
    readiness = Readiness()
    spec = next(s for s in WORK_QUEUES if s.name == EXECUTOR_RUNS)

    async def runs_queue(channel: AbstractChannel) -> AbstractQueue:
        return await declare_work_queue(
            channel, spec, queue_type=settings.amqp_queue_type, delivery_limit=settings.amqp_delivery_limit
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, readiness=readiness, migrations_dir=MIGRATIONS_DIR, outbox=outbox) as runtime:
            channel = await runtime.broker.channel()
            try:
                retry_routes = await declare_retry_ladder(channel)
            finally:
                await channel.close()
            pool = WorkerPool(settings.executor_worker_id or default_worker_id(), settings.executor_concurrency)
            service = AttemptService(runtime.sessions, worker_id=pool.worker_id, retry_routes=retry_routes)
            handler = RunRequestHandler(
                settings=settings,
                service=service,
                runner=ChildRunner(settings),
                pool=pool,
                publisher=runtime.publisher,
            )
            consumer = await runtime.consume(runs_queue, handler.handle, prefetch=settings.executor_concurrency)
            app.state.executor = ExecutorState(settings=settings, service=service, pool=pool)
            log.info("executor_started", worker=pool.worker_id, concurrency=pool.concurrency)
            try:
                yield
            finally:
                await drain(consumer, pool, settings.shutdown_grace_seconds)
                app.state.executor = None

    app = create_service_app(
        settings,
        title="Automation Platform executor",
        description="Runs jobs' steps in isolated child processes; attempt history and worker state.",
        lifespan=lifespan,
        readiness=readiness,
    )
    app.include_router(api_router)
    return app
