"""Use cases on attempts; each is one transaction holding the state change and its outbox messages.

- :meth:`AttemptService.begin`: record that this replica starts an attempt (and enqueue
  ``execution.started``), or say why it must not run (already finished; running elsewhere).
- :meth:`AttemptService.finish`: record the outcome of the run that owns the attempt and enqueue the
  terminal event, plus the next attempt's ``run.requested`` on a delay queue when a retry is due.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CloudEvent, RunRequested
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_executor.db.repository import AttemptRepository
from automation_executor.db.tables import Attempt, outbox
from automation_executor.domain.backoff import retry_delay, will_retry
from automation_executor.domain.outcome import FINISHED_STATUSES, RunOutcome
from automation_executor.events import outcome_event, retry_request, started_event
from automation_executor.retry import RetryRoutes
from automation_messaging import enqueue
from automation_messaging.topology import EVENTS, RETRY

log = get_logger(__name__)
FINISH_TRIES = 4
FINISH_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Begin:
    """What to do with a delivered run request.

    ``action``: ``run`` (this replica owns the attempt now, as run ``run_id``), ``duplicate`` (the
    attempt's outcome is already recorded) or ``in_progress`` (another delivery of the same request is
    being run by a live holder; see :meth:`AttemptService.begin`).
    """

    action: Literal["run", "duplicate", "in_progress"]
    run_id: uuid.UUID | None = None
    started_at: datetime | None = None
    lost_count: int = 0
    status: str | None = None
    previous_worker: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """What :meth:`AttemptService.finish` recorded."""

    recorded: bool
    will_retry: bool = False
    next_attempt_at: datetime | None = None
    delay_seconds: int | None = None


class AttemptService:
    """Attempts of executions run by this replica."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        worker_id: str,
        retry_routes: RetryRoutes,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._sessions = sessions
        self._worker_id = worker_id
        self._retry_routes = retry_routes
        self._clock = clock
        self._rand = rand

    async def begin(self, request: RunRequested, *, redelivered: bool) -> Begin:
        """Claim the attempt for a run on this replica, or say why not.

        A new attempt is inserted as ``running``. A finished one is a duplicate. One still ``running``
        is either being run by the holder of another copy of the request (a request that was never
        delivered before cannot be the retry of a crash: ``in_progress``) or was lost with its executor
        (a redelivery): then the lost run is counted and the attempt is run again, as the same attempt.
        """
        now = self._clock()
        run_id = uuid.uuid4()
        async with self._sessions.begin() as session:
            repo = AttemptRepository(session)
            inserted = await repo.insert_running(
                {
                    "execution_id": request.execution_id,
                    "attempt": request.attempt,
                    "job_id": request.job_id,
                    "account_id": request.account_id,
                    "job_version": request.job_version,
                    "trigger": request.trigger,
                    "status": "running",
                    "worker_id": self._worker_id,
                    "run_id": run_id,
                    "requested_at": request.requested_at,
                    "started_at": now,
                }
            )
            if inserted:
                await self._enqueue(
                    session, started_event(request, started_at=now, worker=self._worker_id, run_number=0)
                )
                return Begin("run", run_id=run_id, started_at=now)
            row = await repo.get(request.execution_id, request.attempt, for_update=True)
            assert row is not None  # attempts are never deleted
            if row.status in FINISHED_STATUSES:
                return Begin("duplicate", status=row.status, previous_worker=row.worker_id)
            if row.status == "running" and not redelivered:
                return Begin("in_progress", status=row.status, previous_worker=row.worker_id)
            previous = row.worker_id
            self._restart(row, run_id=run_id, now=now)
            event = started_event(request, started_at=now, worker=self._worker_id, run_number=row.lost_count)
            await self._enqueue(session, event)
            return Begin("run", run_id=run_id, started_at=now, lost_count=row.lost_count, previous_worker=previous)

    def _restart(self, row: Attempt, *, run_id: uuid.UUID, now: datetime) -> None:
        row.lost_count += 1
        row.lost_at = now
        row.status = "running"
        row.worker_id = self._worker_id
        row.run_id = run_id
        row.started_at = now
        row.finished_at = None
        row.exit_code = None
        row.error = None

    async def finish(self, request: RunRequested, begun: Begin, outcome: RunOutcome) -> Finished:
        """Record ``outcome`` and enqueue what follows, retrying the transaction on database errors."""
        assert begun.run_id is not None
        assert begun.started_at is not None
        finished_at = max(self._clock(), begun.started_at)
        retry = not outcome.succeeded and not outcome.permanent and will_retry(request.attempt, request.job.retries)
        delay: int | None = None
        next_at: datetime | None = None
        messages: list[tuple[CloudEvent, str, str | None]] = []
        if retry:
            backoff = request.job.retry_backoff
            delay = retry_delay(request.attempt, backoff.base_seconds, backoff.max_seconds, rand=self._rand)
            next_at = finished_at + timedelta(seconds=delay)
            messages.append((retry_request(request, next_attempt_at=next_at), RETRY, self._retry_routes[delay]))
        terminal = outcome_event(
            request, outcome, started_at=begun.started_at, finished_at=finished_at, next_attempt_at=next_at
        )
        messages.insert(0, (terminal, EVENTS, None))
        for attempt in range(1, FINISH_TRIES + 1):
            try:
                recorded = await self._record(
                    request,
                    run_id=begun.run_id,
                    outcome=outcome,
                    finished_at=finished_at,
                    next_at=next_at,
                    messages=messages,
                )
            except (OperationalError, DBAPIError, OSError) as exc:
                if attempt == FINISH_TRIES:
                    raise
                log.warning("finish_attempt_failed", try_number=attempt, error=repr(exc))
                await asyncio.sleep(FINISH_BACKOFF_SECONDS * 2 ** (attempt - 1))
                continue
            return Finished(recorded=recorded, will_retry=retry, next_attempt_at=next_at, delay_seconds=delay)
        raise AssertionError("unreachable")

    async def _record(
        self,
        request: RunRequested,
        *,
        run_id: uuid.UUID,
        outcome: RunOutcome,
        finished_at: datetime,
        next_at: datetime | None,
        messages: list[tuple[CloudEvent, str, str | None]],
    ) -> bool:
        async with self._sessions.begin() as session:
            repo = AttemptRepository(session)
            updated = await repo.finish(
                execution_id=request.execution_id,
                attempt=request.attempt,
                run_id=run_id,
                status=outcome.status,
                finished_at=finished_at,
                exit_code=outcome.exit_code,
                error=outcome.error,
                will_retry=next_at is not None,
                next_attempt_at=next_at,
            )
            if updated:
                await enqueue(session, outbox, messages)
                return True
            # Not ours any more, or ours already (a commit whose acknowledgement was lost, then retried).
            row = await repo.get(request.execution_id, request.attempt)
            return row is not None and row.run_id == run_id and row.status == outcome.status

    @staticmethod
    async def _enqueue(session: AsyncSession, event: CloudEvent) -> None:
        await enqueue(session, outbox, event, exchange=EVENTS)

    async def attempts_of(
        self, execution_id: uuid.UUID, *, account_id: uuid.UUID | None, after_attempt: int, limit: int
    ) -> list[Attempt]:
        """Attempt history of an execution (the account's own only, unless ``account_id`` is None)."""
        async with self._sessions() as session:
            repo = AttemptRepository(session)
            return await repo.list_for_execution(
                execution_id, account_id=account_id, after_attempt=after_attempt, limit=limit
            )
