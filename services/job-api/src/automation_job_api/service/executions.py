"""The executions read model: recording execution events, and reading executions and their logs.

Recording is group-committed: events handed to :meth:`ExecutionService.record` while another batch is
being written wait for it, then go together in the next transaction (:class:`GroupCommit`). A batch
locks the rows it touches (in id order, so concurrent replicas cannot deadlock), applies its events
to them in memory in arrival order with the same monotonic rules as one transaction per event, and
writes the new rows, the changed rows, the log batches and one ``pg_notify`` for the log followers.
Under load that is one transaction for many events instead of one each; alone, an event is written
at once as before.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import asyncpg
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import ExecutionLog
from automation_core.errors import Conflict, NotFound
from automation_core.logging import get_logger
from automation_db import utcnow
from automation_job_api.db.recording import RECONNECT_ERRORS, STATE_COLUMNS, Recording
from automation_job_api.db.tables import Execution, ExecutionLogBatch
from automation_job_api.domain.executions import (
    TERMINAL_STATUSES,
    ExecutionState,
    Observation,
    Phase,
    TriggerName,
    apply,
    observe,
)
from automation_job_api.domain.logs import LogBatch, render_log
from automation_job_api.metrics import CANCELS_REQUESTED, EXECUTIONS_RECORDED
from automation_job_api.service.events import cancel_requested, publish_control
from automation_job_api.service.log_follow import notify_execution
from automation_job_api.service.paging import Page, newest_first

log = get_logger(__name__)


class ForeignExecution(Exception):
    """An event names an execution recorded for another job or account: it can never be applied."""


T = TypeVar("T")
R = TypeVar("R")
MAX_BATCH = 256
"""Most events one recording transaction takes (the consumer's prefetch bounds it first)."""
BATCH_TRIES = 3
_LEAD = object()


class BatchFailed(Exception):
    """The batch an event was part of could not be written (the leader's error is named)."""


@dataclass(slots=True)
class _Waiting(Generic[T]):
    item: T
    future: asyncio.Future[Any]


class GroupCommit(Generic[T, R]):
    """Applies items submitted by concurrent callers in batches, one batch at a time, without a task of its own.

    The first caller leads: it yields once to the event loop (deliveries already read join in), then
    applies its own item and up to ``max_batch - 1`` waiting ones with ``apply_batch`` (one answer per
    item, in order; an exception as an answer is raised to that item's caller alone). Callers that
    arrive meanwhile wait; when the batch is done, the longest-waiting one leads the next batch. If
    the batch fails as a whole, the leader gets the error and the others :class:`BatchFailed`.
    """

    def __init__(self, apply_batch: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int = MAX_BATCH) -> None:
        self._apply = apply_batch
        self._max = max(1, max_batch)
        self._queue: deque[_Waiting[T]] = deque()
        self._leading = False

    async def submit(self, item: T) -> R:
        """``item``'s answer, once the batch it went in is committed."""
        if not self._leading:
            self._leading = True
            return await self._lead(item)
        waiting: _Waiting[T] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        try:
            answer = await waiting.future
        except asyncio.CancelledError:
            future = waiting.future
            if future.done() and not future.cancelled() and future.exception() is None and future.result() is _LEAD:
                self._hand_over()  # cancelled just as its turn came: pass the lead on
            elif waiting in self._queue:
                self._queue.remove(waiting)
            raise
        if answer is _LEAD:
            return await self._lead(item)
        return cast(R, answer)

    async def _lead(self, item: T) -> R:
        try:
            await asyncio.sleep(0)
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max - 1))]
            try:
                answers = await self._apply([item, *(w.item for w in batch)])
            except BaseException as exc:
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(BatchFailed(f"recording batch failed: {exc!r}"))
                raise
            for waiting, answer in zip(batch, answers[1:], strict=True):
                if waiting.future.done():  # its caller was cancelled; the item was applied all the same
                    continue
                if isinstance(answer, BaseException):
                    waiting.future.set_exception(answer)
                else:
                    waiting.future.set_result(answer)
        finally:
            self._hand_over()
        own = answers[0]
        if isinstance(own, BaseException):
            raise own
        return own

    def _hand_over(self) -> None:
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                waiting.future.set_result(_LEAD)
                return
        self._leading = False


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a run was asked to be, as ``execution.started`` copies it from ``run.requested``.

    A manual run's row has them from ``POST /jobs/{id}/execute``; other runs learn them from their
    start. Once known they never change (a retry's start carries the same), so they fill what is null.
    """

    job_version: int | None = None
    parameters: dict[str, Any] | None = None
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One execution event to record: what it observes about which execution (and its log batch)."""

    observation: Observation
    execution_id: uuid.UUID
    account_id: uuid.UUID
    job_id: uuid.UUID
    trigger: TriggerName | None = None
    scheduled_for: datetime | None = None
    facts: RunFacts | None = None
    log: ExecutionLog | None = None


class _ConcurrentInsert(Exception):
    """A row this batch meant to create was created by someone else first."""


@dataclass(slots=True)
class _Row:
    """An execution row as a batch sees it: loaded (or created by the batch) and changed in memory."""

    id: uuid.UUID
    account_id: uuid.UUID
    job_id: uuid.UUID
    trigger: str
    scheduled_for: datetime | None
    state: ExecutionState
    new: bool = False
    dirty: bool = False
    facts: RunFacts | None = None
    """What an event of the batch told of the run: written where the row has nothing yet."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> _Row:
        state = ExecutionState(
            status=row["status"],
            attempt=row["attempt"],
            phase=Phase(row["phase"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            exit_code=row["exit_code"],
            error=row["error"],
            result=row["result"],
        )
        return cls(row["id"], row["account_id"], row["job_id"], row["trigger"], row["scheduled_for"], state)

    def values(self) -> dict[str, Any]:
        """The row's columns (:data:`~automation_job_api.db.recording.ROW_COLUMNS`) as the batch left them,
        and the run's facts (:data:`~automation_job_api.db.recording.FACT_COLUMNS`) it learned."""
        state = {name: getattr(self.state, name) for name in STATE_COLUMNS} | {"phase": int(self.state.phase)}
        facts = self.facts or RunFacts()
        return {
            "id": self.id,
            "account_id": self.account_id,
            "job_id": self.job_id,
            "trigger": self.trigger,
            "scheduled_for": self.scheduled_for,
            **state,
            "job_version": facts.job_version,
            "parameters": facts.parameters,
            "queued_at": facts.queued_at,
        }


@dataclass(slots=True)
class _Plan:
    """What a batch writes, and each event's answer."""

    rows: dict[uuid.UUID, _Row] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    notify: list[uuid.UUID] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    results: list[bool | ForeignExecution] = field(default_factory=list)


def _fold(events: Sequence[RecordedEvent], rows: dict[uuid.UUID, _Row]) -> _Plan:
    """Apply ``events`` in order to the locked ``rows`` in memory, exactly as one transaction each would."""
    plan = _Plan(rows=rows)
    for event in events:
        row = rows.get(event.execution_id)
        if row is not None and (row.account_id != event.account_id or row.job_id != event.job_id):
            plan.results.append(ForeignExecution(f"execution {event.execution_id} belongs to another job or account"))
            continue
        if event.log is not None:
            plan.logs.append(
                {
                    "execution_id": event.execution_id,
                    "attempt": event.log.attempt,
                    "seq": event.log.seq,
                    "entries": [entry.model_dump(mode="json") for entry in event.log.entries],
                    "truncated": event.log.truncated,
                }
            )
        if event.execution_id not in plan.notify:
            plan.notify.append(event.execution_id)
        if row is None:
            state = apply(None, event.observation)
            rows[event.execution_id] = _Row(
                event.execution_id,
                event.account_id,
                event.job_id,
                event.trigger or "schedule",
                event.scheduled_for,
                state,
                new=True,
                dirty=True,
                facts=event.facts,
            )
            plan.recorded.append(state.status)
            plan.results.append(True)
            continue
        if event.trigger is not None and row.trigger != event.trigger:
            row.trigger, row.dirty = event.trigger, True
        if event.scheduled_for is not None and row.scheduled_for is None:
            row.scheduled_for, row.dirty = event.scheduled_for, True
        if event.facts is not None and row.facts is None:
            row.facts, row.dirty = event.facts, True
        new = apply(row.state, event.observation)
        changed = new.status != row.state.status
        if new != row.state:
            row.state, row.dirty = new, True
        if changed:
            plan.recorded.append(new.status)
        plan.results.append(changed)
    return plan


class ExecutionService:
    """Use cases of the executions read model."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], recording: Recording, *, max_batch: int = MAX_BATCH
    ) -> None:
        self._sessions = sessions
        self._recording = recording
        self._commits: GroupCommit[RecordedEvent, bool | ForeignExecution | Exception] = GroupCommit(
            self.record_batch, max_batch=max_batch
        )

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
        facts: RunFacts | None = None,
    ) -> bool:
        """Apply one execution event (idempotent, order-insensitive); True when the status changed.

        ``trigger``, ``scheduled_for`` and ``facts`` come from ``execution.started``; a row first created
        by another event (logs may overtake the start) assumes ``schedule`` until the start names it.
        Events recorded at the same time by concurrent callers share one transaction (see
        :class:`GroupCommit`); each caller still gets its own answer.

        Raises :class:`ForeignExecution` when the execution is recorded under another job or account.
        """
        event = RecordedEvent(
            observation=observe(event_type, data),
            execution_id=execution_id,
            account_id=account_id,
            job_id=job_id,
            trigger=trigger,
            scheduled_for=scheduled_for,
            facts=facts,
            log=data if isinstance(data, ExecutionLog) else None,
        )
        result = await self._commits.submit(event)
        if isinstance(result, Exception):  # GroupCommit has raised such answers already: this narrows the type
            raise result
        return result

    async def record_batch(self, events: Sequence[RecordedEvent]) -> list[bool | ForeignExecution | Exception]:
        """Apply events in one transaction, in order; per event: whether the status changed, or why it cannot apply.

        A batch the database refuses for its data (``asyncpg.DataError``: a value no column takes) is
        applied again one event at a time, so that only the event at fault fails (it is requeued, then
        dead-lettered with the reason) and its batch-mates are recorded.
        """
        try:
            return list(await self._record_batch_tries(events))
        except asyncpg.DataError as exc:
            if len(events) == 1:
                raise
            log.warning("recording_batch_split", events=len(events), error=repr(exc))
        answers: list[bool | ForeignExecution | Exception] = []
        for event in events:
            try:
                answers.extend(await self._record_batch_tries([event]))
            except asyncpg.DataError as exc:
                answers.append(exc)
        return answers

    async def _record_batch_tries(self, events: Sequence[RecordedEvent]) -> list[bool | ForeignExecution]:
        for _ in range(BATCH_TRIES - 1):
            try:
                return await self._record_batch_once(events)
            except _ConcurrentInsert:
                continue  # another replica created one of these rows meanwhile: lock it and apply on top
            except RECONNECT_ERRORS as exc:  # the pool replaces the connection it met broken
                log.warning("recording_batch_retried", events=len(events), error=repr(exc))
        return await self._record_batch_once(events)

    async def _record_batch_once(self, events: Sequence[RecordedEvent]) -> list[bool | ForeignExecution]:
        now = utcnow()
        ids = sorted({e.execution_id for e in events})
        async with self._recording.transaction() as batch:
            rows = {row["id"]: _Row.of(row) for row in await batch.lock(ids)}
            plan = _fold(events, rows)
            new = [row.values() for row in plan.rows.values() if row.new]
            changed = [row.values() for row in plan.rows.values() if row.dirty and not row.new]
            inserted = await batch.write(now, new=new, changed=changed, logs=plan.logs, notify=plan.notify)
            if inserted != len(new):
                raise _ConcurrentInsert  # rolled back on the way out; the batch is tried again
        for status in plan.recorded:
            EXECUTIONS_RECORDED.labels(status).inc()
        return plan.results

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
