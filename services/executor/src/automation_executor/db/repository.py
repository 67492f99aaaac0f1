"""Queries on ``attempts`` and ``cancellations`` (the caller owns the session and its transaction).

Leases are computed with the database's clock (``now()``), so replicas with skewed clocks agree on
which lease has expired.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from automation_executor.db.tables import Attempt, Cancellation


def lease_until(seconds: float) -> Any:
    """SQL expression: the database's ``now()`` plus ``seconds``."""
    return func.now() + timedelta(seconds=seconds)


class AttemptRepository:
    """Reads and writes attempts and cancellations within one session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert(self, values: dict[str, Any]) -> bool:
        """Insert a new attempt; False when (execution_id, attempt) already exists."""
        stmt = (
            insert(Attempt)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Attempt.execution_id, Attempt.attempt])
            .returning(Attempt.id)
        )
        return (await self._session.execute(stmt)).scalar_one_or_none() is not None

    async def insert_unless_cancelled(self, values: dict[str, Any]) -> bool:
        """Insert a new attempt in one statement unless it exists or its execution has a cancellation.

        False says only "not inserted": the caller looks at why (the common path costs one round trip).
        """
        columns = Attempt.__table__.c
        row = select(
            *[
                value if isinstance(value, ColumnElement) else literal(value, type_=columns[name].type)
                for name, value in values.items()
            ]
        ).where(~exists().where(Cancellation.execution_id == values["execution_id"]))
        stmt = (
            insert(Attempt)
            .from_select(list(values), row)
            .on_conflict_do_nothing(index_elements=[Attempt.execution_id, Attempt.attempt])
            .returning(Attempt.id)
        )
        return (await self._session.execute(stmt)).scalar_one_or_none() is not None

    async def get(self, execution_id: uuid.UUID, attempt: int, *, for_update: bool = False) -> Attempt | None:
        """One attempt, optionally locked until the end of the transaction."""
        stmt = select(Attempt).where(Attempt.execution_id == execution_id, Attempt.attempt == attempt)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def locked(self, execution_id: uuid.UUID, attempt: int) -> tuple[Attempt, bool] | None:
        """One attempt, locked, and whether its lease is live by the database's clock."""
        live = func.coalesce(Attempt.lease_expires_at > func.now(), False).label("lease_live")
        stmt = (
            select(Attempt, live)
            .where(Attempt.execution_id == execution_id, Attempt.attempt == attempt)
            .with_for_update(of=Attempt)
        )
        row = (await self._session.execute(stmt)).one_or_none()
        return None if row is None else (row[0], bool(row[1]))

    async def update_row(self, row_id: int, values: dict[str, Any]) -> None:
        """Update one attempt by its id (the caller holds its lock)."""
        stmt = update(Attempt).where(Attempt.id == row_id).values(**values)
        await self._session.execute(stmt, execution_options={"synchronize_session": False})

    async def lock_job(self, job_id: uuid.UUID) -> None:
        """Serialise, until the end of the transaction, the starts of one job's attempts (advisory lock)."""
        await self._session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"executor.job:{job_id}"}
        )

    async def running_of_job(self, job_id: uuid.UUID) -> int:
        """Attempts of the job running now anywhere, under a live lease."""
        stmt = select(func.count()).where(
            Attempt.job_id == job_id, Attempt.status == "running", Attempt.lease_expires_at > func.now()
        )
        return int((await self._session.execute(stmt)).scalar_one())

    async def record(
        self, execution_id: uuid.UUID, attempt: int, run_id: uuid.UUID, values: dict[str, Any]
    ) -> Attempt | None:
        """Compare-and-set out of ``running``: update the attempt only while run ``run_id`` holds it."""
        stmt = (
            update(Attempt)
            .where(
                Attempt.execution_id == execution_id,
                Attempt.attempt == attempt,
                Attempt.run_id == run_id,
                Attempt.status == "running",
            )
            .values(**values)
            .returning(Attempt)
        )
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def renew(self, run_ids: Sequence[uuid.UUID], lease_seconds: float) -> dict[uuid.UUID, str | None]:
        """Extend the leases of these runs; run id → cancellation reason (None) for each run still holding one."""
        if not run_ids:
            return {}
        reason = (
            select(Cancellation.reason)
            .where(Cancellation.execution_id == Attempt.execution_id)
            .scalar_subquery()
            .label("cancel_reason")
        )
        stmt = (
            update(Attempt)
            .where(Attempt.run_id.in_(list(run_ids)), Attempt.status == "running")
            .values(lease_expires_at=lease_until(lease_seconds))
            .returning(Attempt.run_id, reason)
        )
        result = await self._session.execute(stmt, execution_options={"synchronize_session": False})
        return {row.run_id: row.cancel_reason for row in result}

    async def expired(self, limit: int) -> list[Attempt]:
        """Running attempts whose lease has expired, locked (``SKIP LOCKED``: replicas share the work)."""
        stmt = (
            select(Attempt)
            .where(Attempt.status == "running", Attempt.lease_expires_at < func.now())
            .order_by(Attempt.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self._session.execute(stmt)).scalars())

    async def lost_of_execution(self, execution_id: uuid.UUID) -> int:
        """Lost attempts of an execution recorded so far."""
        stmt = select(func.count()).where(Attempt.execution_id == execution_id, Attempt.status == "lost")
        return int((await self._session.execute(stmt)).scalar_one())

    async def cancellation(self, execution_id: uuid.UUID) -> str | None:
        """The reason of a remembered cancellation of the execution, if any."""
        stmt = select(Cancellation.reason).where(Cancellation.execution_id == execution_id)
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def remember_cancellation(self, execution_id: uuid.UUID, reason: str, requested_at: datetime) -> bool:
        """Remember a cancellation (idempotent: the first one received wins); whether it is new."""
        stmt = (
            insert(Cancellation)
            .values(execution_id=execution_id, reason=reason, requested_at=requested_at)
            .on_conflict_do_nothing(index_elements=[Cancellation.execution_id])
            .returning(Cancellation.execution_id)
        )
        return (await self._session.execute(stmt)).scalar_one_or_none() is not None

    async def forget_cancellations(self, before: datetime) -> int:
        """Drop cancellations requested before ``before``; how many."""
        stmt = delete(Cancellation).where(Cancellation.requested_at < before).returning(Cancellation.execution_id)
        return len((await self._session.execute(stmt)).all())

    async def list_for_execution(
        self, execution_id: uuid.UUID, *, account_id: uuid.UUID | None, after_attempt: int, limit: int
    ) -> list[Attempt]:
        """Attempts of an execution in attempt order (only the account's own unless ``account_id`` is None)."""
        stmt = (
            select(Attempt)
            .where(Attempt.execution_id == execution_id, Attempt.attempt > after_attempt)
            .order_by(Attempt.attempt)
            .limit(limit)
        )
        if account_id is not None:
            stmt = stmt.where(Attempt.account_id == account_id)
        return list((await self._session.execute(stmt)).scalars())
