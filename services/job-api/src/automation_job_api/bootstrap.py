"""The composition root: job-api's use cases built over open infrastructure."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_job_api.consumers import ExecutionEventsConsumer
from automation_job_api.db.recording import Recording
from automation_job_api.dead_letter_consumer import AmqpRepublisher, DeadLetterConsumer
from automation_job_api.service import AccountService, ExecutionService, JobService, JobsGauge
from automation_job_api.service.dead_letters import DeadLetterService
from automation_job_api.service.gauge import DeadLettersGauge
from automation_job_api.service.log_follow import ExecutionWatch, FollowSettings, LogFollower
from automation_job_api.settings import JobApiSettings
from automation_messaging import Broker


@dataclass(frozen=True, slots=True)
class JobApi:
    """Everything the routers and consumers of one job-api process use."""

    settings: JobApiSettings
    accounts: AccountService
    jobs: JobService
    executions: ExecutionService
    gauge: JobsGauge
    execution_events: ExecutionEventsConsumer
    watch: ExecutionWatch
    logs: LogFollower
    dead_letters: DeadLetterService
    dead_letters_gauge: DeadLettersGauge
    dead_letter_consumer: DeadLetterConsumer | None
    republisher: AmqpRepublisher | None


def build(
    settings: JobApiSettings,
    sessions: async_sessionmaker[AsyncSession],
    recording: Recording,
    *,
    broker: Broker | None = None,
) -> JobApi:
    """Wire the use cases to a session factory and the recording pool (and to the broker, for dead
    letters, when given)."""
    gauge = JobsGauge(sessions, settings.jobs_gauge_refresh_seconds)
    executions = ExecutionService(sessions, recording)
    watch = ExecutionWatch(settings.database_url.get_secret_value(), application_name=f"{settings.service_name}-watch")
    follow = FollowSettings(
        heartbeat_seconds=settings.log_follow_heartbeat_seconds,
        poll_seconds=settings.log_follow_poll_seconds,
        end_grace_seconds=settings.log_follow_end_grace_seconds,
    )
    letters_gauge = DeadLettersGauge(sessions, settings.dead_letters_gauge_refresh_seconds)
    republisher = AmqpRepublisher(broker) if broker is not None else None
    letters = DeadLetterService(sessions, republish=republisher, on_change=letters_gauge.poke)
    consume_letters = broker is not None and settings.dead_letters_consume
    return JobApi(
        settings=settings,
        accounts=AccountService(sessions, settings),
        jobs=JobService(sessions, on_change=gauge.poke),
        executions=executions,
        gauge=gauge,
        execution_events=ExecutionEventsConsumer(executions, settings),
        watch=watch,
        logs=LogFollower(sessions, watch, follow),
        dead_letters=letters,
        dead_letters_gauge=letters_gauge,
        dead_letter_consumer=DeadLetterConsumer(broker, letters, settings) if broker and consume_letters else None,
        republisher=republisher,
    )
