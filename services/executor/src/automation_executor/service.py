"""Use cases on attempts; each is one transaction holding the state change and its outbox messages.

- :meth:`AttemptService.begin`: decide what a delivered run request means (run it here under a new
  lease; a duplicate; running elsewhere; cancelled before it started; over the job's
  ``max_concurrency``; or the request of an attempt whose executor vanished, recorded ``lost`` now).
- :meth:`AttemptService.finish` / :meth:`AttemptService.finish_cancelled`: record the outcome of the run
  that holds the attempt (compare-and-set on ``status = 'running'`` and ``run_id``) with what follows.
- :meth:`AttemptService.release`: hand a running attempt back at shutdown, to be run again.
- :func:`reap_row`: record an attempt whose lease expired as ``lost`` (or ``cancelled`` when a
  cancellation is remembered), with its retry or final failure; used here and by the reaper.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CloudEvent, LogEntry, RunRequested
from automation_core.errors import Outage, unreachable_dependency
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_db.statements import DB_ERRORS
from automation_executor.db.hot import HotPath
from automation_executor.db.repository import AttemptRepository, lease_until
from automation_executor.db.tables import Attempt, outbox
from automation_executor.domain.attempts import TERMINAL_STATUSES
from automation_executor.domain.outcome import RunOutcome
from automation_executor.events import log_event, started_event
from automation_executor.followups import (
    Ending,
    Outgoing,
    Rand,
    enqueue_ending,
    plan_cancelled,
    plan_lost,
    plan_outcome,
)
from automation_executor.retry import RetryRoutes
from automation_messaging import enqueue
from automation_messaging.outbox import outbox_row
from automation_messaging.topology import EVENTS

log = get_logger(__name__)
FINISH_TRIES = 4
FINISH_BACKOFF_SECONDS = 0.5
FINISH_OUTAGE_PAUSE_CAP_SECONDS = 2.0
"""The longest pause between two tries to record an ending while the database cannot be reached."""
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, *DB_ERRORS)
"""Errors after which recording an outcome is tried again (database unreachable, connection lost)."""
REAPED_LOG_SEQ = 2**31 - 1
"""The ``seq`` of the log batch the executor ends an attempt's log with when the attempt cannot (reaped,
or cancelled before it ran): the largest the read model stores, so the line sorts after every batch the
attempt sent, and a redelivery of it is dropped as a repeat."""
BeginAction = Literal["run", "duplicate", "in_progress", "cancelled", "throttled", "reaped"]


@dataclass(frozen=True, slots=True)
class Begin:
    """What to do with a delivered run request.

    ``run``: this replica holds the attempt now, as run ``run_id`` (``run_number`` > 0 when the
    attempt was handed back before). ``duplicate``: its outcome is recorded already. ``in_progress``:
    a live lease holder runs it. ``cancelled``: a remembered cancellation dropped it (recorded now).
    ``throttled``: the job runs ``max_concurrency`` attempts already. ``reaped``: its holder vanished;
    it was recorded ``lost`` (``ending`` says what followed).
    """

    action: BeginAction
    run_id: uuid.UUID | None = None
    started_at: datetime | None = None
    run_number: int = 0
    status: str | None = None
    previous_worker: str | None = None
    reason: str | None = None
    ending: Ending | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """What :meth:`AttemptService.finish` recorded (``recorded`` False: the run no longer held the attempt)."""

    recorded: bool
    will_retry: bool = False
    next_attempt_at: datetime | None = None
    delay_seconds: int | None = None
    dead_letter: str | None = None


async def reap_row(
    repo: AttemptRepository,
    session: AsyncSession,
    row: Attempt,
    request: RunRequested,
    *,
    cancel_reason: str | None,
    now: datetime,
    max_lost: int,
    routes: RetryRoutes,
    rand: Rand,
) -> Ending:
    """Record a locked ``running`` attempt whose lease expired, and enqueue what follows."""
    finished_at = max(now, row.started_at)
    if cancel_reason is not None:
        ending = plan_cancelled(request, finished_at=finished_at, reason=cancel_reason)
    else:
        lost_total = await repo.lost_of_execution(row.execution_id) + 1
        ending = plan_lost(
            request,
            started_at=row.started_at,
            finished_at=finished_at,
            lost_total=lost_total,
            max_lost=max_lost,
            routes=routes,
            rand=rand,
        )
    ending = with_logs(ending, [reaped_log(request, row, ending, at=finished_at)])
    await repo.update_row(row.id, ending.values)
    await enqueue_ending(session, ending)
    return ending


def reaped_log(request: RunRequested, row: Attempt, ending: Ending, *, at: datetime) -> CloudEvent:
    """The line the attempt's log ends with when its lease expired: which executor stopped answering,
    and what follows. Its batch is :data:`REAPED_LOG_SEQ`, after any the vanished replica published."""
    lease = f" (its lease ran out at {row.lease_expires_at:%H:%M:%S}Z)" if row.lease_expires_at else ""
    if ending.status == "cancelled":
        text = f"attempt {row.attempt} cancelled: its executor {row.worker_id} stopped renewing its lease{lease}"
    else:
        text = f"attempt {row.attempt} lost: its executor {row.worker_id} stopped renewing its lease{lease}"
        if ending.will_retry and ending.next_attempt_at is not None:
            text += f"; attempt {row.attempt + 1} at {ending.next_attempt_at:%H:%M:%S}Z"
        elif ending.dead_letter == "poison":
            text += f"; {ending.error}"
        else:
            text += "; no retries left"
    return system_log(request, text, at=at)


def system_log(request: RunRequested, text: str, *, at: datetime) -> CloudEvent:
    """A ``system`` line that ends an attempt's log, written by the executor for an attempt whose own
    process cannot write it (lost, or dropped before it ran). Its batch is :data:`REAPED_LOG_SEQ`,
    after any the attempt published itself."""
    entry = LogEntry(ts=at, stream="system", step=None, text=text)
    return log_event(request, seq=REAPED_LOG_SEQ, entries=[entry], truncated=False)


def with_logs(ending: Ending, logs: Sequence[CloudEvent]) -> Ending:
    """``ending`` with ``logs`` (``execution.log`` events) ahead of its messages: the relay publishes
    the rows of one statement in id order, so consumers normally get the end of the log before the
    outcome (two replicas' relays may split the rows between them)."""
    if not logs:
        return ending
    return replace(ending, messages=[*(Outgoing(event, exchange=EVENTS) for event in logs), *ending.messages])


class AttemptService:
    """Attempts of executions run by this replica.

    With ``hot`` (:class:`~automation_executor.db.hot.HotPath`), the common claim and the record of a
    run's outcome are one statement each on its pool; everything else, and everything without it,
    goes through ORM sessions. ``may_reap`` (the replica's reaper's
    :meth:`~automation_executor.leases.Reaper.settled`) says whether a request that finds its attempt
    under an expired lease may record it lost on the spot; otherwise it is acked and left to the reaper.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        worker_id: str,
        retry_routes: RetryRoutes,
        lease_seconds: float = 30.0,
        max_lost: int = 3,
        clock: Callable[[], datetime] = utcnow,
        rand: Rand = random.uniform,
        hot: HotPath | None = None,
        may_reap: Callable[[], bool] = lambda: True,
    ) -> None:
        self._sessions = sessions
        self._hot = hot
        self._may_reap = may_reap
        self._worker_id = worker_id
        self._routes = retry_routes
        self.lease_seconds = lease_seconds
        self.max_lost = max_lost
        self._clock = clock
        self._rand = rand

    async def begin(self, request: RunRequested) -> Begin:
        """Claim the attempt for a run on this replica, or say why not (see :class:`Begin`)."""
        now = self._clock()
        if request.job.max_concurrency is None:  # the common path: one statement claims a new attempt
            run_id = uuid.uuid4()
            if await self._claim_new(request, run_id, now):
                return Begin("run", run_id=run_id, started_at=now)
        async with self._sessions.begin() as session:
            repo = AttemptRepository(session)
            cancel_reason = await repo.cancellation(request.execution_id)
            found = await repo.locked(request.execution_id, request.attempt)
            if found is None:
                if cancel_reason is not None:
                    if await repo.insert(self._cancelled_row(request, cancel_reason, now)):
                        ending = plan_cancelled(request, finished_at=now, reason=cancel_reason)
                        line = f"attempt {request.attempt} cancelled before it started: {cancel_reason}"
                        await enqueue_ending(session, with_logs(ending, [system_log(request, line, at=now)]))
                        return Begin("cancelled", reason=cancel_reason)
                elif await self._over_limit(repo, request):
                    return Begin("throttled")
                else:
                    run_id = uuid.uuid4()
                    if await repo.insert(self._running_row(request, run_id, now)):
                        await self._started(session, request, now, run_number=0)
                        return Begin("run", run_id=run_id, started_at=now)
                found = await repo.locked(request.execution_id, request.attempt)  # a concurrent insert won
                assert found is not None
            row, lease_live = found
            return await self._existing(
                repo, session, request, row, lease_live=lease_live, cancel_reason=cancel_reason, now=now
            )

    async def _claim_new(self, request: RunRequested, run_id: uuid.UUID, now: datetime) -> bool:
        """Insert a new running attempt with its ``execution.started`` unless it exists or is cancelled."""
        if self._hot is not None:
            # The statement computes the lease from lease_seconds and takes the request as JSON text.
            row = self._base_row(request, now) | {"run_id": run_id, "request": request.model_dump_json()}
            event = started_event(request, started_at=now, worker=self._worker_id, run_number=0)
            return await self._hot.claim(row, [outbox_row(event, exchange=EVENTS)], self.lease_seconds)
        async with self._sessions.begin() as session:
            if await AttemptRepository(session).insert_unless_cancelled(self._running_row(request, run_id, now)):
                await self._started(session, request, now, run_number=0)
                return True
        return False

    async def _existing(
        self,
        repo: AttemptRepository,
        session: AsyncSession,
        request: RunRequested,
        row: Attempt,
        *,
        lease_live: bool,
        cancel_reason: str | None,
        now: datetime,
    ) -> Begin:
        if row.status in TERMINAL_STATUSES:
            return Begin("duplicate", status=row.status, previous_worker=row.worker_id)
        if row.status == "running":
            if lease_live or not self._may_reap():
                # Held elsewhere; or its lease ran out while the database may have been away, and the
                # reaper decides once its holder has had a lease period to renew (or record) it.
                return Begin("in_progress", status=row.status, previous_worker=row.worker_id)
            stored = RunRequested.model_validate(row.request) if row.request is not None else request
            ending = await reap_row(
                repo,
                session,
                row,
                stored,
                cancel_reason=cancel_reason,
                now=now,
                max_lost=self.max_lost,
                routes=self._routes,
                rand=self._rand,
            )
            return Begin("reaped", status=ending.status, previous_worker=row.worker_id, ending=ending)
        # released: handed back at shutdown, its request requeued; run it again as the same attempt
        if cancel_reason is not None:
            at = max(now, row.started_at)
            ending = plan_cancelled(request, finished_at=at, reason=cancel_reason)
            line = f"attempt {row.attempt} cancelled before it ran again (it was handed back): {cancel_reason}"
            await repo.update_row(row.id, ending.values)
            await enqueue_ending(session, with_logs(ending, [system_log(request, line, at=at)]))
            return Begin("cancelled", reason=cancel_reason, previous_worker=row.worker_id)
        if await self._over_limit(repo, request):
            return Begin("throttled")
        run_id = uuid.uuid4()
        run_number = row.run_count
        await repo.update_row(
            row.id,
            {
                "status": "running",
                "worker_id": self._worker_id,
                "run_id": run_id,
                "started_at": now,
                "lease_expires_at": lease_until(self.lease_seconds),
                "run_count": row.run_count + 1,
                "request": request.model_dump(mode="json"),
            },
        )
        await self._started(session, request, now, run_number=run_number)
        return Begin("run", run_id=run_id, started_at=now, run_number=run_number, previous_worker=row.worker_id)

    async def _over_limit(self, repo: AttemptRepository, request: RunRequested) -> bool:
        limit = request.job.max_concurrency
        if limit is None:
            return False
        await repo.lock_job(request.job_id)
        return await repo.running_of_job(request.job_id) >= limit

    def _base_row(self, request: RunRequested, now: datetime) -> dict[str, Any]:
        return {
            "execution_id": request.execution_id,
            "attempt": request.attempt,
            "job_id": request.job_id,
            "account_id": request.account_id,
            "job_version": request.job_version,
            "trigger": request.trigger,
            "worker_id": self._worker_id,
            "requested_at": request.requested_at,
            "started_at": now,
        }

    def _running_row(self, request: RunRequested, run_id: uuid.UUID, now: datetime) -> dict[str, Any]:
        return self._base_row(request, now) | {
            "status": "running",
            "run_id": run_id,
            "lease_expires_at": lease_until(self.lease_seconds),
            "request": request.model_dump(mode="json"),
        }

    def _cancelled_row(self, request: RunRequested, reason: str, now: datetime) -> dict[str, Any]:
        return self._base_row(request, now) | {
            "status": "cancelled",
            "run_id": uuid.uuid4(),
            "finished_at": now,
            "error": reason,
            "will_retry": False,
        }

    async def _started(self, session: AsyncSession, request: RunRequested, now: datetime, *, run_number: int) -> None:
        event = started_event(request, started_at=now, worker=self._worker_id, run_number=run_number)
        await enqueue(session, outbox, event, exchange=EVENTS)

    async def finish(
        self, request: RunRequested, begun: Begin, outcome: RunOutcome, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        """Record ``outcome`` of run ``begun.run_id`` and enqueue what follows (retrying database errors).

        ``logs``: the run's last ``execution.log`` batches, enqueued with the outcome, ahead of its messages.
        """
        assert begun.started_at is not None
        finished_at = max(self._clock(), begun.started_at)
        ending = plan_outcome(
            request, outcome, started_at=begun.started_at, finished_at=finished_at, routes=self._routes, rand=self._rand
        )
        return await self._record(request, begun, with_logs(ending, logs))

    async def finish_cancelled(
        self, request: RunRequested, begun: Begin, reason: str, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        """Record that run ``begun.run_id`` was stopped on request (``logs`` as in :meth:`finish`)."""
        assert begun.started_at is not None
        ending = plan_cancelled(request, finished_at=max(self._clock(), begun.started_at), reason=reason)
        return await self._record(request, begun, with_logs(ending, logs))

    async def release(self, request: RunRequested, begun: Begin) -> bool:
        """Hand the attempt back (shutdown): ``released``, to be run again when its request comes back."""
        assert begun.run_id is not None
        async with self._sessions.begin() as session:
            row = await AttemptRepository(session).record(
                request.execution_id, request.attempt, begun.run_id, {"status": "released", "lease_expires_at": None}
            )
        return row is not None

    async def _record(self, request: RunRequested, begun: Begin, ending: Ending) -> Finished:
        """Record the run's ending, trying again after a database error (:data:`FINISH_TRIES` times), and
        for as long as the database cannot be reached at all: the run is over, and running it again
        because its outcome could not be written would run its steps twice. Until another replica reaps
        the attempt (which waits a lease period after an outage, see :class:`~automation_executor.leases.Reaper`)
        the record still lands when the database is back."""
        assert begun.run_id is not None
        outage: Outage | None = None  # made at the first outage: nothing added to a run recorded at once
        failures = 0  # other database errors
        while True:
            try:
                recorded = await self._record_once(request, begun.run_id, ending)
            except RETRYABLE as exc:
                if unreachable_dependency(exc) is not None:
                    outage = outage or Outage(
                        started="finish_waits_for_database",
                        ended="finish_database_back",
                        first=FINISH_BACKOFF_SECONDS,
                        cap=FINISH_OUTAGE_PAUSE_CAP_SECONDS,
                    )
                    await asyncio.sleep(outage.pause(exc))
                    continue
                failures += 1
                if failures >= FINISH_TRIES:
                    raise
                log.warning("finish_attempt_failed", try_number=failures, error=repr(exc))
                await asyncio.sleep(FINISH_BACKOFF_SECONDS * 2 ** (failures - 1))
                continue
            if outage is not None:
                outage.over()
            return Finished(
                recorded=recorded,
                will_retry=ending.will_retry,
                next_attempt_at=ending.next_attempt_at,
                delay_seconds=ending.delay_seconds,
                dead_letter=ending.dead_letter,
            )

    async def _record_once(self, request: RunRequested, run_id: uuid.UUID, ending: Ending) -> bool:
        if self._hot is not None and HotPath.handles(ending.values):
            rows = [
                outbox_row(
                    m.event, exchange=m.exchange, routing_key=m.routing_key, headers=m.headers, priority=m.priority
                )
                for m in ending.messages
            ]
            if await self._hot.record(request.execution_id, request.attempt, run_id, ending.values, rows):
                return True
            async with self._sessions() as session:  # not ours any more, or ours already (see below)
                row = await AttemptRepository(session).get(request.execution_id, request.attempt)
            return row is not None and row.run_id == run_id and row.status == ending.status
        async with self._sessions.begin() as session:
            repo = AttemptRepository(session)
            if await repo.record(request.execution_id, request.attempt, run_id, ending.values) is not None:
                await enqueue_ending(session, ending)
                return True
            # Not ours any more (reaped, cancelled), or ours already (a commit whose answer was lost).
            row = await repo.get(request.execution_id, request.attempt)
            return row is not None and row.run_id == run_id and row.status == ending.status

    async def attempts_of(
        self, execution_id: uuid.UUID, *, account_id: uuid.UUID | None, after_attempt: int, limit: int
    ) -> list[Attempt]:
        """Attempt history of an execution (the account's own only, unless ``account_id`` is None)."""
        async with self._sessions() as session:
            repo = AttemptRepository(session)
            return await repo.list_for_execution(
                execution_id, account_id=account_id, after_attempt=after_attempt, limit=limit
            )
