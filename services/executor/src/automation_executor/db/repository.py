"""Queries on the ``attempts`` table (the caller owns the session and its transaction)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from automation_executor.db.tables import Attempt


class AttemptRepository:
    """Reads and writes attempts within one session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert_running(self, values: dict[str, Any]) -> bool:
        """Insert a new attempt; False when (execution_id, attempt) already exists."""
        stmt = (
            insert(Attempt)
            .values(**values)
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

    async def finish(
        self,
        *,
        execution_id: uuid.UUID,
        attempt: int,
        run_id: uuid.UUID,
        status: str,
        finished_at: datetime,
        exit_code: int | None,
        error: str | None,
        will_retry: bool,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record the outcome of the run ``run_id``; False when that run no longer owns the attempt."""
        stmt = (
            update(Attempt)
            .where(
                Attempt.execution_id == execution_id,
                Attempt.attempt == attempt,
                Attempt.run_id == run_id,
                Attempt.status == "running",
            )
            .values(
                status=status,
                finished_at=finished_at,
                exit_code=exit_code,
                error=error,
                will_retry=will_retry,
                next_attempt_at=next_attempt_at,
            )
            .returning(Attempt.id)
        )
        return (await self._session.execute(stmt)).scalar_one_or_none() is not None

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
