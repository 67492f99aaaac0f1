"""The executor app: HTTP API, the ``executor.runs`` and ``automation.control`` consumers, leases.

The lifespan first checks that working directories can be made under
``AUTOMATION_EXECUTOR_WORKDIR_ROOT`` (:mod:`automation_executor.workdirs`), then opens the runtime
(migrations, database, broker, outbox relay), declares the retry delay queues, probes the bubblewrap
sandbox, starts this replica's fork server, opens the small asyncpg pool of the hot claim and record
statements (:mod:`automation_executor.db.hot`), builds the composition (pool, attempt and lease use
cases, child runner, handlers), starts the heartbeat and the reaper, and consumes
``automation.control`` (a queue of its own, ``executor.control.<worker id>``, and the shared
``executor.cancellations``) and ``executor.runs`` (prefetch = concurrency).
On shutdown it stops consuming runs, lets running executions finish within
``AUTOMATION_SHUTDOWN_GRACE_SECONDS`` (heartbeats go on meanwhile), cancels the rest (their children
are killed, their attempts handed back and their messages requeued, so they run again elsewhere), then
stops the heartbeat, the reaper and the fork server, and lets the runtime close.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from aio_pika.abc import AbstractChannel, AbstractQueue
from fastapi import FastAPI

from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.logging import get_logger
from automation_executor.api import api_router
from automation_executor.bootstrap import compose
from automation_executor.bridge import BrokerServices
from automation_executor.child.http import prepare_fork as prepare_http
from automation_executor.child.limits import limit_plan
from automation_executor.db import MIGRATIONS_DIR
from automation_executor.db.hot import HotPath
from automation_executor.db.tables import outbox
from automation_executor.launch import Launcher, command_server, fork_server
from automation_executor.pool import WorkerPool, default_worker_id
from automation_executor.retry import declare_retry_ladder
from automation_executor.runner import DEFAULT_PATH, default_limits
from automation_executor.sandbox import probe_sandbox
from automation_executor.settings import ExecutorSettings
from automation_executor.state import ExecutorState
from automation_executor.workdirs import check_root, filesystem_type
from automation_messaging import Consumer, RpcClient, open_runtime
from automation_messaging.topology import (
    CONTROL,
    EXECUTOR_CANCELLATIONS,
    EXECUTOR_RUNS,
    REPLICA_CONTROL_PREFIX,
    REPLICA_REPLIES_PREFIX,
    WORK_QUEUES,
    declare_replica_queue,
    declare_work_queue,
)

log = get_logger(__name__)
ABORT_WAIT_SECONDS = 10.0
"""How long cancelled executions get to kill their children and hand their messages back."""
CONTROL_PREFETCH = 16


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


def fork_server_environment() -> dict[str, str]:
    """The fork server's environment: what the child interpreter needs, none of the executor's settings."""
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def create_app(settings: ExecutorSettings) -> FastAPI:
    """The executor's FastAPI app; nothing runs until its lifespan starts."""
    readiness = Readiness()
    specs = {s.name: s for s in WORK_QUEUES}

    def work_queue(name: str) -> Callable[[AbstractChannel], Awaitable[AbstractQueue]]:
        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await declare_work_queue(
                channel, specs[name], queue_type=settings.amqp_queue_type, delivery_limit=settings.amqp_delivery_limit
            )

        return declare

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workdir_root = check_root(settings.executor_workdir_root)
        async with (
            open_runtime(settings, readiness=readiness, migrations_dir=MIGRATIONS_DIR, outbox=outbox) as runtime,
            AsyncExitStack() as stack,
        ):
            routes = await declare_retry_ladder(runtime.broker.connection, queue_type=settings.amqp_queue_type)
            worker_id = settings.executor_worker_id or default_worker_id()
            rpc = RpcClient(runtime.broker, reply_queue=f"{REPLICA_REPLIES_PREFIX}{worker_id}")
            await rpc.start()
            stack.push_async_callback(rpc.stop)
            sandbox = await probe_sandbox()
            if not sandbox.available:
                log.warning("sandbox_unavailable", problem=sandbox.problem)
            server = await stack.enter_async_context(
                fork_server(
                    enabled=settings.executor_launcher == "forkserver",
                    preload=settings.executor_forkserver_preload,
                    env=fork_server_environment(),
                )
            )
            commands = await stack.enter_async_context(
                command_server(
                    enabled=settings.executor_direct_commands,
                    env=fork_server_environment(),
                    hold_limits=limit_plan(default_limits(settings))[0],
                )
            )
            if commands is not None:  # jobs of commands and requests run here: their first request is not slow
                prepare_http()
            hot = await HotPath.open(
                settings.database_url.get_secret_value(),
                size=max(2, settings.executor_concurrency),
                service=settings.service_name,
                wake=runtime.relay.wake if runtime.relay is not None else None,
            )
            stack.push_async_callback(hot.close)
            replica = compose(
                settings,
                hot=hot,
                sessions=runtime.sessions,
                publisher=runtime.publisher,
                routes=routes,
                sandbox=sandbox,
                services=BrokerServices(runtime.publisher, rpc),
                worker_id=worker_id,
            )
            replica.start_loops()
            stack.push_async_callback(replica.stop_loops)
            # Cancellations: this replica's own queue gets every one (and keeps those broadcast while it
            # reconnects); the shared queue keeps each one until some replica has remembered it.
            own = f"{REPLICA_CONTROL_PREFIX}{replica.pool.worker_id}"

            async def control_queue(channel: AbstractChannel) -> AbstractQueue:
                return await declare_replica_queue(channel, own, [(CONTROL, "")])

            await runtime.consume(control_queue, replica.cancels.handle, prefetch=CONTROL_PREFETCH)
            await runtime.consume(work_queue(EXECUTOR_CANCELLATIONS), replica.cancels.handle, prefetch=CONTROL_PREFETCH)
            consumer = await runtime.consume(
                work_queue(EXECUTOR_RUNS), replica.runs.handle, prefetch=settings.executor_concurrency
            )
            launcher: Launcher = "forkserver" if server is not None else "spawn"
            workdir_filesystem = filesystem_type(workdir_root)
            app.state.executor = ExecutorState(
                settings, replica.service, replica.pool, sandbox, launcher, workdir_root, workdir_filesystem
            )
            log.info(
                "executor_started",
                worker=replica.pool.worker_id,
                concurrency=replica.pool.concurrency,
                launcher=launcher,
                direct_commands=commands is not None,
                sandbox=sandbox.available,
                workdir_root=workdir_root,
                workdir_filesystem=workdir_filesystem,
            )
            try:
                yield
            finally:
                await drain(consumer, replica.pool, settings.shutdown_grace_seconds)
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
