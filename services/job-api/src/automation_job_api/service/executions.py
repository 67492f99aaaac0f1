"""The executions read model: recording execution events, and reading executions and their logs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import ExecutionLog
from automation_core.errors import Conflict, NotFound
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_job_api.db.tables import Execution, ExecutionLogBatch
from automation_job_api.domain.executions import TERMINAL_STATUSES, ExecutionState, Phase, TriggerName, apply, observe
from automation_job_api.domain.logs import LogBatch, render_log
from automation_job_api.metrics import CANCELS_REQUESTED, EXECUTIONS_RECORDED
from automation_job_api.service.events import cancel_requested, publish_control
from automation_job_api.service.log_follow import notify_execution
from automation_job_api.service.paging import Page, newest_first

log = get_logger(__name__)
_STATE_FIELDS = ("status", "attempt", "phase", "started_at", "finished_at", "exit_code", "error", "result")


class ForeignExecution(Exception):
    """An event names an execution recorded for another job or account: it can never be applied."""


def _state_of(row: Execution) -> ExecutionState:
    return ExecutionState(
        status=row.status,  # type: ignore[arg-type]  # the CHECK constraint keeps it a Status
        attempt=row.attempt,
        phase=Phase(row.phase),
        started_at=row.started_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        error=row.error,
        result=row.result,
    )


def _columns_of(state: ExecutionState) -> dict[str, Any]:
    values = {name: getattr(state, name) for name in _STATE_FIELDS}
    values["phase"] = int(state.phase)
    return values


class ExecutionService:
    """Use cases of the executions read model."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(
        self,
        event_type: str,
        data: BaseModel,
        *,
        execution_id: uuid.UUID,
        account_id: uuid.UUID,
        job_id: uuid.UUID,
        trigger: TriggerName | None,
        scheduled_for: datetime | None = None,
    ) -> bool:
        """Apply one execution event (idempotent, order-insensitive); True when the status changed.

        ``trigger`` and ``scheduled_for`` come from ``execution.started``; a row first created by
        another event (logs may overtake the start) assumes ``schedule`` until the start names it.

        Raises :class:`ForeignExecution` when the execution is recorded under another job or account.
        """
        observation = observe(event_type, data)
        now = utcnow()
        async with self._sessions.begin() as session:
            await notify_execution(session, execution_id)  # sent at commit, dropped on rollback
            if isinstance(data, ExecutionLog):
                await session.execute(
                    insert(ExecutionLogBatch)
                    .values(
                        execution_id=execution_id,
                        attempt=data.attempt,
                        seq=data.seq,
                        entries=[entry.model_dump(mode="json") for entry in data.entries],
                        truncated=data.truncated,
                        received_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["execution_id", "attempt", "seq"])
                )
            first = apply(None, observation)
            inserted = await session.scalar(
                insert(Execution)
                .values(
                    id=execution_id,
                    account_id=account_id,
                    job_id=job_id,
                    trigger=trigger or "schedule",
                    scheduled_for=scheduled_for,
                    created_at=now,
                    updated_at=now,
                    **_columns_of(first),
                )
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(Execution.id)
            )
            if inserted is not None:
                EXECUTIONS_RECORDED.labels(first.status).inc()
                return True
            row = await session.scalar(select(Execution).where(Execution.id == execution_id).with_for_update())
            assert row is not None  # the insert conflicted on this id, and rows are never deleted
            if row.account_id != account_id or row.job_id != job_id:
                raise ForeignExecution(f"execution {execution_id} belongs to another job or account")
            if trigger is not None and row.trigger != trigger:
                row.trigger = trigger
                row.updated_at = now
            if scheduled_for is not None and row.scheduled_for is None:
                row.scheduled_for = scheduled_for
                row.updated_at = now
            current = _state_of(row)
            new = apply(current, observation)
            if new == current:
                return False
            for name, value in _columns_of(new).items():
                setattr(row, name, value)
            row.updated_at = now
        if new.status != current.status:
            EXECUTIONS_RECORDED.labels(new.status).inc()
            return True
        return False

    async def cancel(self, account_id: uuid.UUID, execution_id: uuid.UUID, reason: str) -> Execution:
        """Ask every executor to stop a queued or running execution (``execution.cancel`` via the outbox).

        The first request's time and reason are kept; a repeated request publishes the command again
        (an executor that missed it gets another chance). 409 when the execution is already finished.
        """
        now = utcnow()
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(Execution)
                .where(Execution.id == execution_id, Execution.account_id == account_id)
                .with_for_update()
            )
            if row is None:
                raise NotFound("execution not found")
            if row.status in TERMINAL_STATUSES:
                raise Conflict(
                    f"execution is already {row.status}; only queued or running executions can be cancelled",
                    field="status",
                )
            if row.cancel_requested_at is None:
                row.cancel_requested_at = now
                row.cancel_reason = reason
                row.updated_at = now
            await publish_control(session, cancel_requested(execution_id, reason, now))
            await notify_execution(session, execution_id)
        CANCELS_REQUESTED.inc()
        log.info("execution_cancel_requested", execution_id=str(execution_id), status=row.status)
        return row

    async def get(self, account_id: uuid.UUID, execution_id: uuid.UUID) -> Execution:
        """One execution of the account."""
        async with self._sessions() as session:
            return await self._load(session, account_id, execution_id)

    async def list(
        self,
        account_id: uuid.UUID,
        *,
        job_id: uuid.UUID | None,
        status: str | None,
        trigger: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Execution]:
        """The account's executions, newest first, filtered by job, status and trigger."""
        stmt = select(Execution).where(Execution.account_id == account_id)
        if job_id is not None:
            stmt = stmt.where(Execution.job_id == job_id)
        if status is not None:
            stmt = stmt.where(Execution.status == status)
        if trigger is not None:
            stmt = stmt.where(Execution.trigger == trigger)
        async with self._sessions() as session:
            return await newest_first(
                session, stmt, created_at=Execution.created_at, id_=Execution.id, cursor=cursor, limit=limit
            )

    async def log_text(self, account_id: uuid.UUID, execution_id: uuid.UUID) -> str:
        """The execution's log as text (see :mod:`automation_job_api.domain.logs`)."""
        async with self._sessions() as session:
            await self._load(session, account_id, execution_id)
            rows = (
                await session.scalars(
                    select(ExecutionLogBatch)
                    .where(ExecutionLogBatch.execution_id == execution_id)
                    .order_by(ExecutionLogBatch.attempt, ExecutionLogBatch.seq)
                )
            ).all()
        return render_log(LogBatch(r.attempt, r.seq, r.entries, r.truncated) for r in rows)

    @staticmethod
    async def _load(session: AsyncSession, account_id: uuid.UUID, execution_id: uuid.UUID) -> Execution:
        row = await session.scalar(
            select(Execution).where(Execution.id == execution_id, Execution.account_id == account_id)
        )
        if row is None:
            raise NotFound("execution not found")
        return row
