"""Job use cases: each change writes the job row, a ``job_versions`` snapshot and the outbox message
in one transaction; a manual run writes the execution row and ``run.requested`` together."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.errors import Conflict, InvalidInput, NotFound
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_job_api.db.tables import Execution, Job, JobVersion
from automation_job_api.domain.definitions import JobDefinition, validate_job
from automation_job_api.domain.executions import ExecutionState
from automation_job_api.domain.jobs import POLICY_COLUMN_FIELDS
from automation_job_api.domain.parameters import resolve_parameters
from automation_job_api.metrics import EXECUTIONS_RECORDED
from automation_job_api.service.events import (
    job_changed,
    job_deleted,
    job_spec,
    publish_command,
    publish_event,
    run_requested,
)
from automation_job_api.service.paging import Page, newest_first

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Queued:
    """A manual run queued (or, with an Idempotency-Key used before, the run it queued then)."""

    execution_id: uuid.UUID
    replayed: bool = False


def parameters_fingerprint(parameters: dict[str, Any]) -> str:
    """sha256 of the parameters as sent, keys sorted: what a repeated request must match."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _columns(definition: JobDefinition) -> dict[str, Any]:
    dumped = definition.model_dump(mode="json")
    policies = {key: dumped[key] for key in POLICY_COLUMN_FIELDS}
    return {"check_step": dumped["check"], "policies": policies} | {
        key: dumped[key]
        for key in (
            "name",
            "description",
            "schedule",
            "timezone",
            "enabled",
            "timeout_seconds",
            "retries",
            "retry_backoff",
            "priority",
            "max_concurrency",
            "parameters",
            "steps",
        )
    }


class JobService:
    """Use cases on one account's jobs; another account's job is a 404."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, on_change: Callable[[], None]) -> None:
        self._sessions = sessions
        self._on_change = on_change

    async def create(self, account_id: uuid.UUID, definition: JobDefinition) -> Job:
        """Store a new job at version 1 and announce ``job.created``."""
        validate_job(definition)
        now = utcnow()
        job = Job(id=uuid.uuid4(), account_id=account_id, version=1, created_at=now, updated_at=now)
        for key, value in _columns(definition).items():
            setattr(job, key, value)
        async with self._sessions.begin() as session:
            session.add(job)
            await self._flush(session, definition.name)
            await self._record(session, job, "created", now)
        self._changed("job_created", job)
        return job

    async def get(self, account_id: uuid.UUID, job_id: uuid.UUID) -> Job:
        """One job of the account."""
        async with self._sessions() as session:
            return await self._load(session, self._owned(account_id, job_id))

    async def list(
        self,
        account_id: uuid.UUID,
        *,
        enabled: bool | None,
        name: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Job]:
        """The account's jobs, newest first, optionally only enabled/disabled ones or the one named ``name``."""
        stmt = select(Job).where(Job.account_id == account_id)
        if enabled is not None:
            stmt = stmt.where(Job.enabled.is_(enabled))
        if name is not None:
            stmt = stmt.where(Job.name == name)
        async with self._sessions() as session:
            return await newest_first(session, stmt, created_at=Job.created_at, id_=Job.id, cursor=cursor, limit=limit)

    async def replace(self, account_id: uuid.UUID, job_id: uuid.UUID, definition: JobDefinition) -> Job:
        """Replace the whole definition; the version grows by one and ``job.updated`` is announced."""
        validate_job(definition)
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await self._load(session, self._owned(account_id, job_id).with_for_update())
            for key, value in _columns(definition).items():
                setattr(job, key, value)
            job.version += 1
            job.updated_at = now
            await self._flush(session, definition.name)
            await self._record(session, job, "updated", now)
        self._changed("job_updated", job)
        return job

    async def set_enabled(self, account_id: uuid.UUID, job_id: uuid.UUID, enabled: bool) -> Job:
        """Enable or disable the schedule (a new version); no change, no new version, when already so."""
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await self._load(session, self._owned(account_id, job_id).with_for_update())
            if job.enabled is enabled:
                return job
            job.enabled = enabled
            job.version += 1
            job.updated_at = now
            await session.flush()
            await self._record(session, job, "enabled" if enabled else "disabled", now)
        self._changed("job_enabled" if enabled else "job_disabled", job)
        return job

    async def delete(self, account_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Delete the job (its executions stay readable); ``job.deleted`` is announced at a new version."""
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await self._load(session, self._owned(account_id, job_id).with_for_update())
            version = job.version + 1
            session.add(
                JobVersion(
                    job_id=job.id,
                    version=version,
                    account_id=account_id,
                    change="deleted",
                    spec=job_spec(job).model_dump(mode="json"),
                    check_step=job.check_step,
                    created_at=now,
                )
            )
            await session.execute(delete(Job).where(Job.id == job.id))
            await publish_event(session, job_deleted(job, version, now))
        self._changed("job_deleted", job)

    async def execute(
        self,
        account_id: uuid.UUID,
        job_id: uuid.UUID,
        parameters: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Queued:
        """Queue a manual run (disabled jobs too): the execution row and ``run.requested`` together.

        With ``idempotency_key``, the job runs once per key: a request with a key already used for this
        job answers with that run (``replayed``), or is refused when its parameters differ.
        """
        fingerprint = parameters_fingerprint(parameters) if idempotency_key is not None else None
        for _ in range(2):  # a concurrent request with the same key commits first: then replay its run
            try:
                return await self._queue(account_id, job_id, parameters, idempotency_key, fingerprint)
            except IntegrityError:
                if idempotency_key is None:
                    raise
        raise Conflict("a request with this Idempotency-Key is still being handled", field="Idempotency-Key")

    async def _queue(
        self,
        account_id: uuid.UUID,
        job_id: uuid.UUID,
        parameters: dict[str, Any],
        idempotency_key: str | None,
        fingerprint: str | None,
    ) -> Queued:
        now = utcnow()
        execution_id = uuid.uuid4()
        async with self._sessions.begin() as session:
            job = await self._load(session, self._owned(account_id, job_id).with_for_update(read=True))
            if idempotency_key is not None:
                earlier = await session.scalar(
                    select(Execution).where(Execution.job_id == job.id, Execution.idempotency_key == idempotency_key)
                )
                if earlier is not None:
                    if earlier.idempotency_fingerprint != fingerprint:
                        raise InvalidInput(
                            f"Idempotency-Key already used for execution {earlier.id} of this job with other "
                            "parameters; use a new key for a new run",
                            field="Idempotency-Key",
                        )
                    log.info("run_request_replayed", execution_id=str(earlier.id), job_id=str(job_id))
                    return Queued(earlier.id, replayed=True)
            resolved = resolve_parameters(job.parameters, parameters)
            state = ExecutionState.queued()
            session.add(
                Execution(
                    id=execution_id,
                    account_id=account_id,
                    job_id=job.id,
                    status=state.status,
                    attempt=state.attempt,
                    phase=int(state.phase),
                    trigger="manual",
                    job_version=job.version,
                    parameters=resolved,
                    queued_at=now,
                    idempotency_key=idempotency_key,
                    idempotency_fingerprint=fingerprint,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()  # a concurrent request with the same key: IntegrityError, before the publish
            await publish_command(session, run_requested(execution_id, job, job_spec(job), resolved, now))
        EXECUTIONS_RECORDED.labels("queued").inc()
        log.info(
            "run_requested", execution_id=str(execution_id), job_id=str(job_id), trigger="manual", version=job.version
        )
        return Queued(execution_id)

    @staticmethod
    def _owned(account_id: uuid.UUID, job_id: uuid.UUID) -> Select[Job]:
        return select(Job).where(Job.id == job_id, Job.account_id == account_id)

    @staticmethod
    async def _load(session: AsyncSession, stmt: Select[Job]) -> Job:
        job = await session.scalar(stmt)
        if job is None:
            raise NotFound("job not found")
        return job

    @staticmethod
    async def _flush(session: AsyncSession, name: str) -> None:
        try:
            await session.flush()
        except IntegrityError as exc:
            if "uq_jobs_account_id_name" in str(exc.orig):
                raise Conflict(f"a job named {name!r} already exists in this account", field="name") from exc
            raise

    @staticmethod
    async def _record(session: AsyncSession, job: Job, change: str, at: datetime) -> None:
        spec = job_spec(job)
        session.add(
            JobVersion(
                job_id=job.id,
                version=job.version,
                account_id=job.account_id,
                change=change,
                spec=spec.model_dump(mode="json"),
                check_step=job.check_step,
                created_at=at,
            )
        )
        await publish_event(
            session, job_changed("job.created" if change == "created" else "job.updated", job, spec, at)
        )

    def _changed(self, event: str, job: Job) -> None:
        self._on_change()
        log.info(event, job_id=str(job.id), account_id=str(job.account_id), version=job.version)
