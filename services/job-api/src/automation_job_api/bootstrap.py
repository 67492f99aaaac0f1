"""The composition root: job-api's use cases built over open infrastructure."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_job_api.consumers import ExecutionEventsConsumer
from automation_job_api.service import AccountService, ExecutionService, JobService, JobsGauge
from automation_job_api.settings import JobApiSettings


@dataclass(frozen=True, slots=True)
class JobApi:
    """Everything the routers and consumers of one job-api process use."""

    settings: JobApiSettings
    accounts: AccountService
    jobs: JobService
    executions: ExecutionService
    gauge: JobsGauge
    execution_events: ExecutionEventsConsumer


def build(settings: JobApiSettings, sessions: async_sessionmaker[AsyncSession]) -> JobApi:
    """Wire the use cases to a session factory."""
    gauge = JobsGauge(sessions, settings.jobs_gauge_refresh_seconds)
    executions = ExecutionService(sessions)
    return JobApi(
        settings=settings,
        accounts=AccountService(sessions, settings),
        jobs=JobService(sessions, on_change=gauge.poke),
        executions=executions,
        gauge=gauge,
        execution_events=ExecutionEventsConsumer(executions, settings),
    )
