"""The job-api application: public REST API, execution events and dead letters consumers, outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from automation_core.auth import Authenticator, Principal
from automation_core.errors import Unavailable
from automation_core.health import Readiness
from automation_core.http import create_service_app
from automation_core.settings import ServiceSettings
from automation_job_api.api import TAGS, api_router
from automation_job_api.bootstrap import JobApi, build
from automation_job_api.db import MIGRATIONS_DIR
from automation_job_api.db.recording import Recording
from automation_job_api.db.tables import outbox
from automation_job_api.settings import JobApiSettings
from automation_messaging import open_runtime

DESCRIPTION = """The public REST API of the Automation Platform: accounts and API keys, job definitions,
manual runs and cancellation, the history of executions with live logs, and the platform's dead letters.
Authenticate with `Authorization: Bearer <API key or JWT>` (or `X-API-Key: <API key>`).
Errors are `application/problem+json`; `field` names the field at fault."""


class _ApiKeyCheck:
    """The Authenticator's ``extra``: API keys, once the lifespan has opened the database."""

    def __init__(self) -> None:
        self.job_api: JobApi | None = None

    async def __call__(self, credential: str) -> Principal | None:
        if self.job_api is None:
            raise Unavailable("job-api is starting or stopping")
        return await self.job_api.accounts.authenticate_key(credential)


def create_app(settings: ServiceSettings) -> FastAPI:
    """The FastAPI app; infrastructure is opened by its lifespan, nothing at import or build time."""
    if not isinstance(settings, JobApiSettings):
        settings = JobApiSettings.model_validate(settings.model_dump())
    job_settings = settings
    readiness = Readiness()
    api_keys = _ApiKeyCheck()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Closed after open_runtime has stopped the consumers that record through it.
        recording = Recording(job_settings.database_url.get_secret_value())
        async with AsyncExitStack() as stack:
            stack.push_async_callback(recording.close)
            runtime = await stack.enter_async_context(
                open_runtime(job_settings, readiness=readiness, migrations_dir=MIGRATIONS_DIR, outbox=outbox)
            )
            job_api = build(job_settings, runtime.sessions, recording, broker=runtime.broker)
            await job_api.gauge.start()
            await job_api.dead_letters_gauge.start()
            await job_api.watch.start()
            try:
                consumer = job_api.execution_events
                await runtime.consume(
                    consumer.declare, consumer.handle, prefetch=job_settings.execution_events_prefetch
                )
                if job_api.dead_letter_consumer is not None:
                    await job_api.dead_letter_consumer.start()
                app.state.job_api = job_api
                api_keys.job_api = job_api
                yield
            finally:
                app.state.job_api = None
                api_keys.job_api = None
                if job_api.dead_letter_consumer is not None:
                    await job_api.dead_letter_consumer.stop(job_settings.shutdown_grace_seconds)
                await job_api.watch.stop()
                if job_api.republisher is not None:
                    await job_api.republisher.close()
                await job_api.dead_letters_gauge.stop()
                await job_api.gauge.stop()

    app = create_service_app(
        job_settings,
        title="Automation Platform job-api",
        description=DESCRIPTION,
        lifespan=lifespan,
        authenticator=Authenticator(job_settings, extra=api_keys),
        readiness=readiness,
        openapi_tags=TAGS,
    )
    app.include_router(api_router())
    return app
