"""Leases of running attempts: the heartbeat that renews them, the reaper that finds expired ones.

- :class:`LeaseKeeper` (one task per replica) renews, every third of the lease, the leases of every
  attempt this replica runs, in one statement that also reports remembered cancellations (so a run
  whose replica missed the ``execution.cancel`` broadcast is still stopped). A run whose lease was
  taken over is stopped at once. When renewals fail, or hang (a database that does not answer, a
  network that drops packets), past the lease, this replica fences itself: it stops those runs by their
  deadline (:meth:`LeaseKeeper.fence_overdue`, checked often), since another replica may record them
  lost from then on.
- :class:`Reaper` (every replica) records attempts whose lease expired as ``lost`` with the retry or
  final failure that follows (``FOR UPDATE SKIP LOCKED``: replicas share the work; compare-and-set: an
  attempt is recorded once), and forgets old cancellations. It reaps only once the database has
  answered it for a whole lease period (after its start, after an outage, and after a stall: a
  statement answered late), so that holders can renew, or record their outcome, first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CancelExecution, RunRequested
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_executor import metrics
from automation_executor.db.repository import AttemptRepository
from automation_executor.followups import Ending, Rand
from automation_executor.pool import WorkerPool
from automation_executor.retry import RetryRoutes
from automation_executor.service import reap_row

log = get_logger(__name__)
REAP_BATCH = 100


def count_ending(ending: Ending, *, stage: str = "running") -> None:
    """Metrics of an attempt recorded by the reaper (or the handler, for an expired lease it found)."""
    metrics.EXECUTIONS.labels(ending.status).inc()
    if ending.status == "lost":
        metrics.LOST_ATTEMPTS.inc()
    if ending.status == "cancelled":
        metrics.CANCELLATIONS.labels(stage).inc()
    if ending.will_retry:
        metrics.RETRIES.inc()
    if ending.dead_letter is not None:
        metrics.DEAD_LETTERS.labels(ending.dead_letter).inc()


class DatabaseStalled(Exception):
    """The database answered the reaper's look for expired leases too late to trust it: it was not
    answering for a while (frozen, or its network dropping packets), so it renewed no lease either."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the database took {seconds:.1f}s to answer")
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class Reaped:
    """An attempt recorded because its lease expired."""

    execution_id: uuid.UUID
    attempt: int
    worker_id: str
    ending: Ending


class LeaseService:
    """Lease renewals, expired-lease recording and remembered cancellations (one transaction each)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retry_routes: RetryRoutes,
        lease_seconds: float = 30.0,
        max_lost: int = 3,
        clock: Callable[[], datetime] = utcnow,
        rand: Rand = random.uniform,
    ) -> None:
        self._sessions = sessions
        self._routes = retry_routes
        self.lease_seconds = lease_seconds
        self.max_lost = max_lost
        self._clock = clock
        self._rand = rand

    async def renew(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """Renew the leases of these runs; run id → cancellation reason (or None) for each still held."""
        async with self._sessions.begin() as session:
            return await AttemptRepository(session).renew(run_ids, self.lease_seconds)

    async def reap_expired(self, limit: int = REAP_BATCH, *, stall_seconds: float | None = None) -> list[Reaped]:
        """Record up to ``limit`` attempts whose lease expired, with what follows each.

        Raises :class:`DatabaseStalled` (recording nothing) when the expired attempts were found more than
        ``stall_seconds`` after this began: the database was not answering meanwhile, and leases ran out
        because no holder could renew them, not because their holders went.
        """
        now = self._clock()
        began = time.monotonic()
        reaped: list[Reaped] = []
        async with self._sessions.begin() as session:
            repo = AttemptRepository(session)
            expired = await repo.expired(limit)
            took = time.monotonic() - began
            if expired and stall_seconds is not None and took > stall_seconds:
                raise DatabaseStalled(took)  # the transaction rolls back: the rows stay as they are
            for row in expired:
                if row.request is None:  # cannot happen for rows with a lease; never loop on one
                    await repo.update_row(row.id, {"lease_expires_at": None})
                    continue
                request = RunRequested.model_validate(row.request)
                ending = await reap_row(
                    repo,
                    session,
                    row,
                    request,
                    cancel_reason=await repo.cancellation(row.execution_id),
                    now=now,
                    max_lost=self.max_lost,
                    routes=self._routes,
                    rand=self._rand,
                )
                reaped.append(Reaped(row.execution_id, row.attempt, row.worker_id, ending))
        return reaped

    async def answers(self) -> None:
        """One round trip to the database (raises when it cannot be reached)."""
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def remember_cancellation(self, cancel: CancelExecution) -> bool:
        """Remember an ``execution.cancel``; whether it was new."""
        async with self._sessions.begin() as session:
            return await AttemptRepository(session).remember_cancellation(
                cancel.execution_id, cancel.reason, cancel.requested_at
            )

    async def forget_cancellations(self, older_than: timedelta) -> int:
        """Forget cancellations requested more than ``older_than`` ago; how many."""
        async with self._sessions.begin() as session:
            return await AttemptRepository(session).forget_cancellations(self._clock() - older_than)


class Periodic:
    """Runs ``tick`` every ``interval`` seconds in a task until stopped; a failing tick is logged."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._tick = tick
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._tick()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive database outages
                log.warning(f"{self._name}_failed", error=repr(exc))


class LeaseKeeper:
    """This replica's heartbeat: renews its runs' leases, stops runs it no longer holds or that were cancelled."""

    def __init__(
        self,
        leases: LeaseService,
        pool: WorkerPool,
        *,
        kill_grace: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._pool = pool
        self._kill_grace = kill_grace
        self._monotonic = monotonic

    @property
    def fence_every(self) -> float:
        """How often :meth:`fence_overdue` should run: a twentieth of the lease, at most a second."""
        return min(1.0, self._leases.lease_seconds / 20)

    async def fence_overdue(self) -> int:
        """Stop (SIGKILL) every run whose lease this replica could not renew in time; how many.

        A run is stopped once its deadline (when its last renewal that succeeded was sent, plus the
        lease) is less than :attr:`fence_every` away, so, called that often, no later than the deadline.
        The database's own expiry of the lease, from which another replica may record the attempt lost
        and run it again, comes later than the deadline (the renewal reached the database after it was
        sent). Whether the renewals failed or are still waiting for an answer does not matter.
        """
        soon = self._monotonic() + self.fence_every
        stopped = 0
        for slot in self._pool.leased():
            overdue = slot.stop_kind is None and soon >= slot.lease_deadline
            if overdue and slot.request_stop("lease_lost", "the lease could not be renewed in time", 0):
                stopped += 1
                log.warning("lease_ran_out_run_stopped", execution_id=str(slot.execution_id))
        return stopped

    async def renew_once(self) -> None:
        """One heartbeat: a renewal that has no answer within a heartbeat is given up (and tried again at
        the next), so a connection that stopped answering does not hold the heartbeat."""
        slots = [slot for slot in self._pool.leased() if slot.stop_kind is None]
        if not slots:
            return
        started = self._monotonic()
        try:
            held = await asyncio.wait_for(
                self._leases.renew([slot.run_id for slot in slots if slot.run_id is not None]),
                timeout=self._leases.lease_seconds / 3,
            )
        except Exception as exc:  # noqa: BLE001 - the database may be away; fence once the leases run out
            metrics.LEASE_RENEWAL_FAILURES.inc()
            log.warning("lease_renewal_failed", runs=len(slots), error=repr(exc))
            await self.fence_overdue()
            return
        for slot in slots:
            if slot.run_id not in held:
                if slot.running:
                    metrics.LEASE_RENEWAL_FAILURES.inc()
                    log.warning("lease_taken_over_run_stopped", execution_id=str(slot.execution_id))
                    slot.request_stop("lease_lost", "the attempt is no longer held by this run", 0)
                continue
            slot.lease_deadline = started + self._leases.lease_seconds
            reason = held[slot.run_id]
            if reason is not None and slot.request_stop("cancel", reason, self._kill_grace):
                log.info("cancellation_found_by_heartbeat", execution_id=str(slot.execution_id))


class Reaper:
    """Records expired leases (any replica) and forgets old cancellations.

    It reaps only once the database has answered it for a whole lease period without a break (after
    its start, and after any pass that failed). An outage stops every heartbeat, so leases run out in
    the database without their holders having gone: a holder whose run is still going renews it within
    a heartbeat of the database's return, and one whose run ended during the outage records its outcome,
    before any attempt is taken for lost and run again.
    """

    def __init__(
        self,
        leases: LeaseService,
        *,
        retention: timedelta,
        forget_every: int = 100,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._retention = retention
        self._forget_every = forget_every
        self._monotonic = monotonic
        self._ticks = 0
        self._answering_since: float | None = None

    def settled(self) -> bool:
        """Whether the database has answered for a whole lease period: expired leases mean vanished holders."""
        since = self._answering_since
        return since is not None and self._monotonic() - since >= self._leases.lease_seconds

    @property
    def stall_seconds(self) -> float:
        """An answer later than this (a sixth of the lease) means the database was not answering: a live
        holder's lease runs out only when no renewal got through for two thirds of the lease."""
        return self._leases.lease_seconds / 6

    def _answering_from_now(self, why: str, *, stalled: float | None = None) -> None:
        """Count the database as answering from now on: reap a lease period later."""
        self._answering_since = self._monotonic()
        if stalled is None:
            log.info(why, waits_seconds=self._leases.lease_seconds)
        else:
            log.warning(why, took_seconds=round(stalled, 1), waits_seconds=self._leases.lease_seconds)

    async def reap_once(self) -> int:
        """One pass; how many attempts were recorded."""
        try:
            return await self._pass()
        except Exception:
            self._answering_since = None
            raise

    async def _pass(self) -> int:
        if not self.settled():
            asked = self._monotonic()
            await self._leases.answers()
            took = self._monotonic() - asked
            if self._answering_since is None:
                self._answering_from_now("reaper_waits_a_lease_period")
            elif took > self.stall_seconds:
                self._answering_from_now("reaper_database_stalled", stalled=took)
            if not self.settled():
                return 0
        self._ticks += 1
        if self._ticks % self._forget_every == 1:
            forgotten = await self._leases.forget_cancellations(self._retention)
            if forgotten:
                log.info("cancellations_forgotten", count=forgotten)
        total = 0
        while True:
            try:
                reaped = await self._leases.reap_expired(stall_seconds=self.stall_seconds)
            except DatabaseStalled as exc:
                self._answering_from_now("reaper_database_stalled", stalled=exc.seconds)
                return total
            for item in reaped:
                count_ending(item.ending)
                log.warning(
                    "attempt_lease_expired",
                    execution_id=str(item.execution_id),
                    attempt=item.attempt,
                    worker=item.worker_id,
                    recorded=item.ending.status,
                    will_retry=item.ending.will_retry,
                    dead_letter=item.ending.dead_letter,
                )
            total += len(reaped)
            if len(reaped) < REAP_BATCH:
                return total
