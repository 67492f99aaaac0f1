"""The composition root: one replica's pool, use cases, handlers and background loops, wired together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_executor.bridge import PlatformServices
from automation_executor.consumers import CommandPublisher, RunRequestHandler
from automation_executor.control import CancelHandler
from automation_executor.db.hot import HotPath
from automation_executor.joblimits import JobLimitsRunner, Runner
from automation_executor.leases import LeaseKeeper, LeaseService, Periodic, Reaper
from automation_executor.pool import WorkerPool, default_worker_id
from automation_executor.retry import RetryRoutes
from automation_executor.runner import ChildRunner
from automation_executor.sandbox import SandboxStatus
from automation_executor.service import AttemptService
from automation_executor.settings import ExecutorSettings


@dataclass(frozen=True, slots=True)
class Executor:
    """Everything one executor replica runs besides its infrastructure."""

    pool: WorkerPool
    service: AttemptService
    leases: LeaseService
    runs: RunRequestHandler
    cancels: CancelHandler
    heartbeat: Periodic
    fence: Periodic
    reaper: Periodic

    def start_loops(self) -> None:
        """Start the heartbeat, its fence and the reaper."""
        self.heartbeat.start()
        self.fence.start()
        self.reaper.start()

    async def stop_loops(self) -> None:
        """Stop the reaper and the heartbeat (after the pool drained: running attempts keep their leases)."""
        await self.reaper.stop()
        await self.heartbeat.stop()
        await self.fence.stop()


def compose(
    settings: ExecutorSettings,
    *,
    sessions: async_sessionmaker[AsyncSession],
    publisher: CommandPublisher,
    routes: RetryRoutes,
    sandbox: SandboxStatus,
    services: PlatformServices | None = None,
    runner: Runner | None = None,
    hot: HotPath | None = None,
    worker_id: str | None = None,
) -> Executor:
    """Build a replica (``runner`` defaults to child processes with each job's resource limits).

    ``services`` answer the children's event and browser requests (see :mod:`automation_executor.bridge`);
    ``hot`` runs the common claim and outcome statements in one round trip each (see
    :mod:`automation_executor.db.hot`); ``worker_id`` defaults to ``AUTOMATION_EXECUTOR_WORKER_ID`` or
    one made up for this process.
    """

    def child_runner(effective: ExecutorSettings) -> Runner:
        return ChildRunner(effective, services=services)

    pool = WorkerPool(worker_id or settings.executor_worker_id or default_worker_id(), settings.executor_concurrency)
    lease, max_lost = settings.executor_lease_seconds, settings.executor_max_lost
    leases = LeaseService(sessions, retry_routes=routes, lease_seconds=lease, max_lost=max_lost)
    reaper = Reaper(leases, retention=timedelta(seconds=settings.executor_cancellation_retention_seconds))
    service = AttemptService(
        sessions,
        worker_id=pool.worker_id,
        retry_routes=routes,
        lease_seconds=lease,
        max_lost=max_lost,
        hot=hot,
        may_reap=reaper.settled,
    )
    grace = settings.executor_kill_grace_seconds
    keeper = LeaseKeeper(leases, pool, kill_grace=grace)
    runs = RunRequestHandler(
        settings=settings,
        service=service,
        runner=runner or JobLimitsRunner(settings, child_runner),
        pool=pool,
        publisher=publisher,
        retry_routes=routes,
        sandbox=sandbox,
    )
    return Executor(
        pool=pool,
        service=service,
        leases=leases,
        runs=runs,
        cancels=CancelHandler(leases=leases, pool=pool, kill_grace=grace),
        heartbeat=Periodic("heartbeat", keeper.renew_once, settings.heartbeat_seconds),
        fence=Periodic("lease_fence", keeper.fence_overdue, keeper.fence_every),
        reaper=Periodic("reaper", reaper.reap_once, settings.reaper_interval_seconds),
    )
