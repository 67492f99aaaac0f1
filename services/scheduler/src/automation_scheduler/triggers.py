"""Event triggers: events on ``automation.events`` fire the jobs whose triggers match them.

**Bindings.** Queue ``scheduler.trigger-events`` is bound to each distinct trigger pattern of the
enabled jobs (the ``triggers`` table), not to ``#``: with specific patterns (``inventory.*``) the
broker delivers only what some job may want. :class:`TriggerBindings` reconciles the queue's bindings
with the table — after every job change that alters a job's patterns, at start, and periodically —
under a PostgreSQL advisory lock, so replicas take turns and converge (the bound patterns are kept in
``trigger_bindings``). A pattern that can only match platform events (``job.*``) is never bound. A
pattern that can match them (``#``, ``*.created``) is bound, and the consumer's routing-key prefilter
(:func:`accept_routing_key`) acks platform events (``job.*``, ``execution.*`` — the heavy
``execution.log`` stream — ``run.*``, ``browser.*``) without decoding them.

**Firing.** For each event, in one transaction: the candidate triggers (same literal first word, or a
wildcard first word) are matched in process (topic pattern, then ``where``); each matching job's row
is locked (in job id order) and the event is decided for it — ``skipped`` (``max_runs`` reached, or
``overlap`` under ``forbid``), ``rate_limited`` (``max_per_minute``), or ``fired``: a ``run.requested``
with trigger ``event``, the event as ``event``, the parameters the event's data gives (with the
schema's defaults, validated: :func:`~automation_scheduler.domain.firing.event_parameters`) and the
execution id ``uuid5(NAMESPACE, "<job>:event:<event id>")`` (plus ``execution.cancel`` of running
ones under ``replace``). An event whose parameters do not validate is recorded ``skipped`` with the
reason ``invalid parameters: parameters.<name>: ...`` and sends nothing (counted as
``automation_scheduler_event_triggers_total{outcome="invalid_parameters"}``). A job the event cannot
be decided for at all (its stored definition, trigger or parameters schema fails to evaluate: a defect
of that one job, never of the event) is recorded ``skipped`` with the reason ``job could not be
evaluated: ...`` (``{outcome="error"}``, log ``event_trigger_job_failed``), so it holds up neither the
event nor the other jobs it fires, whichever account they belong to. The outcome row in
``event_fires`` (primary key job and event id) is the deduplication:
a redelivered or republished event fires nothing twice.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue
from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import CloudEvent, ContractError, JobSpec
from automation_contracts.schema_safety import UnusableSchema
from automation_core.errors import InvalidInput
from automation_core.logging import get_logger
from automation_core.storable import check_value
from automation_messaging import Broker, Delivery, enqueue
from automation_messaging.topology import EVENTS, declare_service_queue
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.db.tables import event_fires, outbox, schedules, trigger_bindings, triggers
from automation_scheduler.domain.firing import event_execution_id, event_parameters
from automation_scheduler.domain.triggers import Trigger, bindable, first_match, is_platform_type
from automation_scheduler.messages import Outgoing, cancel_execution, run_requested
from automation_scheduler.settings import SchedulerSettings

log = get_logger(__name__)
TRIGGER_EVENTS_QUEUE = "scheduler.trigger-events"
INVALID_PARAMETERS = "invalid parameters"
"""How the reason of an event recorded ``skipped`` because its parameters do not validate begins."""
JOB_FAILED = "job could not be evaluated"
"""How the reason of an event recorded ``skipped`` because the job itself failed to evaluate begins."""
MAX_REASON = 500
"""Longest reason recorded (a refused value is quoted in it, and event data can be large)."""
BINDINGS_LOCK = "automation-scheduler:trigger-bindings"


def accept_routing_key(routing_key: str) -> bool:
    """The consumer's prefilter: platform event types never trigger, so they are dropped unread (and
    counted as ``automation_scheduler_event_triggers_total{outcome="filtered"}``)."""
    if is_platform_type(routing_key):
        metrics.EVENT_TRIGGERS.labels("filtered").inc()
        return False
    return True


class TriggerEventsQueue:
    """Declares ``scheduler.trigger-events`` without bindings (:class:`TriggerBindings` manages them)."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._settings = settings

    async def __call__(self, channel: AbstractChannel) -> AbstractQueue:
        return await declare_service_queue(
            channel,
            TRIGGER_EVENTS_QUEUE,
            [],
            queue_type=self._settings.amqp_queue_type,
            delivery_limit=self._settings.amqp_delivery_limit,
        )


class TriggerBindings:
    """Keeps the trigger queue's bindings equal to the distinct bindable patterns of ``triggers``."""

    def __init__(self, engine: AsyncEngine, broker: Broker) -> None:
        self._engine = engine
        self._broker = broker
        self._channel: AbstractChannel | None = None

    async def reconcile(self) -> tuple[set[str], set[str]]:
        """Bind what is missing and unbind what no trigger uses; returns (bound, unbound)."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._broker.channel(confirms=False)
        queue = await self._channel.get_queue(TRIGGER_EVENTS_QUEUE, ensure=False)
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": BINDINGS_LOCK})
            wanted = {p for p in (await conn.execute(select(triggers.c.pattern).distinct())).scalars() if bindable(p)}
            bound = set((await conn.execute(select(trigger_bindings.c.pattern))).scalars())
            added, removed = wanted - bound, bound - wanted
            for pattern in sorted(added):
                await queue.bind(EVENTS, routing_key=pattern)
            for pattern in sorted(removed):
                await queue.unbind(EVENTS, routing_key=pattern)
            if added:
                await conn.execute(insert(trigger_bindings).values([{"pattern": p} for p in sorted(added)]))
            if removed:
                await conn.execute(trigger_bindings.delete().where(trigger_bindings.c.pattern.in_(sorted(removed))))
        if added or removed:
            log.info("trigger_bindings_updated", bound=sorted(added), unbound=sorted(removed))
        return added, removed

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


@dataclass(slots=True)
class _Match:
    job_id: uuid.UUID
    trigger: Trigger
    failed: str | None = None
    """Why the job's triggers could not be evaluated against the event (then ``trigger`` is its first)."""


def _job_failed(job_id: uuid.UUID, event: str, exc: Exception) -> str:
    """The reason recorded when a job could not be evaluated for an event (and its warning)."""
    reason = f"{JOB_FAILED}: {type(exc).__name__}: {exc}"[:MAX_REASON]
    log.warning("event_trigger_job_failed", job_id=str(job_id), event_id=event, reason=reason)
    return reason


def _uncarriable(event: CloudEvent) -> str | None:
    """Why no run can carry ``event`` (checked once per event): data the executor could not read, nested
    deeper than the platform's messages carry (or holding what PostgreSQL cannot keep); None otherwise."""
    try:
        check_value(event.data, "data")
    except InvalidInput as exc:
        return f"{INVALID_PARAMETERS}: {exc}"[:MAX_REASON]
    return None


class TriggerEventsHandler:
    """Handles one delivery on ``scheduler.trigger-events``."""

    def __init__(self, engine: AsyncEngine, *, on_committed: Callable[[], None]) -> None:
        self._engine = engine
        self._on_committed = on_committed

    async def __call__(self, event: CloudEvent, _delivery: Delivery) -> CloudEvent | None:
        if is_platform_type(event.type):  # bound by a wildcard and not prefiltered: still never a trigger
            return None
        envelope = event.model_dump(mode="json")
        async with self._engine.begin() as conn:
            matches = await self._matches(conn, event.type, envelope)
            outcomes = await self._fire(conn, event, matches) if matches else Counter({"unmatched": 1})
        for outcome, count in outcomes.items():
            metrics.EVENT_TRIGGERS.labels(outcome).inc(count)
        if outcomes["fired"]:
            metrics.FIRES.labels("event").inc(outcomes["fired"])
        if outcomes["cancels"]:
            metrics.CANCELS.inc(outcomes["cancels"])
        if outcomes["fired"] or outcomes["cancels"]:
            self._on_committed()
        return None

    @staticmethod
    async def _matches(conn: AsyncConnection, event_type: str, envelope: dict[str, Any]) -> list[_Match]:
        """The jobs the event fires (one trigger each), and those whose triggers failed to evaluate."""
        head = event_type.split(".", 1)[0]
        t = triggers
        rows = (
            await conn.execute(
                select(t.c.job_id, t.c.position, t.c.pattern, t.c.conditions, t.c.max_per_minute).where(
                    or_(t.c.head == head, t.c.head.is_(None))
                )
            )
        ).all()
        by_job: dict[uuid.UUID, list[Trigger]] = defaultdict(list)
        for r in rows:
            by_job[r.job_id].append(Trigger.from_row(r.position, r.pattern, r.conditions, r.max_per_minute))
        found: list[_Match] = []
        for job_id, job_triggers in by_job.items():
            try:
                trigger = first_match(job_triggers, event_type, envelope)
            except Exception as exc:  # noqa: BLE001 - one job's defect: recorded for it, the others go on
                found.append(
                    _Match(
                        job_id,
                        min(job_triggers, key=lambda t: t.position),
                        _job_failed(job_id, str(envelope.get("id")), exc),
                    )
                )
                continue
            if trigger is not None:
                found.append(_Match(job_id, trigger))
        return sorted(found, key=lambda m: m.job_id)

    async def _fire(self, conn: AsyncConnection, event: CloudEvent, matches: list[_Match]) -> Counter[str]:
        s = schedules
        rows = {
            r.job_id: r
            for r in (
                await conn.execute(
                    select(s.c.job_id, s.c.account_id, s.c.job_version, s.c.spec, s.c.state, s.c.runs_fired)
                    .where(s.c.job_id.in_([m.job_id for m in matches]))
                    .order_by(s.c.job_id)
                    .with_for_update()
                )
            ).all()
        }
        running = await repo.running_of(conn, list(rows))
        now = await repo.db_now(conn)
        outcomes: Counter[str] = Counter()
        events: list[Outgoing] = []
        uncarriable = _uncarriable(event)
        for match in matches:
            row = rows.get(match.job_id)
            if row is None or row.spec is None or row.state in ("deleted", "paused"):
                continue
            decided = await self._decide_for(
                conn, event, match, row, running.get(match.job_id, []), uncarriable=uncarriable
            )
            spec, outcome, reason, parameters, label = decided
            execution_id = event_execution_id(match.job_id, event.id) if outcome == "fired" else None
            inserted = await conn.execute(
                pg_insert(event_fires)
                .values(
                    job_id=match.job_id,
                    event_id=event.id,
                    position=match.trigger.position,
                    event_type=event.type,
                    outcome=outcome,
                    reason=reason,
                    job_version=row.job_version,
                    execution_id=execution_id,
                )
                .on_conflict_do_nothing()
                .returning(event_fires.c.job_id)
            )
            if inserted.first() is None:
                outcomes["duplicate"] += 1
                continue
            outcomes[label] += 1
            if label == "invalid_parameters":
                log.warning("event_parameters_invalid", job_id=str(match.job_id), event_id=event.id, reason=reason)
            if execution_id is None or spec is None:
                continue
            if spec.overlap_policy == "replace":
                reason = f"replaced by the run of event {event.id} (overlap_policy replace)"
                cancels = [cancel_execution(eid, reason, now) for eid in running.get(match.job_id, [])]
                events.extend(cancels)
                outcomes["cancels"] += len(cancels)
            events.append(self._run(event, row, spec, execution_id, now, parameters=parameters))
            await self._count_run(conn, row, spec)
        await enqueue(conn, outbox, events)
        return outcomes

    async def _decide_for(
        self,
        conn: AsyncConnection,
        event: CloudEvent,
        match: _Match,
        row: Any,
        running: list[uuid.UUID],
        *,
        uncarriable: str | None,
    ) -> tuple[JobSpec | None, str, str | None, dict[str, Any], str]:
        """The job's definition (None when it cannot be read), the outcome and reason to record, the run's
        parameters, and the outcome's metric label (``invalid_parameters`` and ``error`` apart).
        ``uncarriable``: why no run can carry this event (:func:`_uncarriable`), if so."""
        failed, spec = match.failed, None
        if failed is None:
            try:
                spec = JobSpec.model_validate(row.spec)
            except Exception as exc:  # noqa: BLE001 - a definition this release cannot read: that job's defect
                failed = _job_failed(match.job_id, event.id, exc)
        if spec is None:
            return None, "skipped", failed, {}, "error"
        outcome, reason = await self._decide(conn, match, spec, row, running)
        if outcome != "fired":
            return spec, outcome, reason, {}, outcome
        if uncarriable is not None:
            return spec, "skipped", uncarriable, {}, "invalid_parameters"
        try:
            return spec, outcome, reason, event_parameters(spec.parameters, event.data), outcome
        except ContractError as exc:
            if not isinstance(exc, UnusableSchema):  # the event's data does not make valid parameters
                return spec, "skipped", f"{INVALID_PARAMETERS}: {exc}"[:MAX_REASON], {}, "invalid_parameters"
            failure: Exception = exc  # the job's parameters schema cannot be used (the error names the place)
        except Exception as exc:  # noqa: BLE001 - the job's parameters schema itself failed to evaluate
            failure = exc
        return spec, "skipped", _job_failed(match.job_id, event.id, failure), {}, "error"

    @staticmethod
    async def _decide(
        conn: AsyncConnection, match: _Match, spec: JobSpec, row: Any, running: list[uuid.UUID]
    ) -> tuple[str, str | None]:
        if spec.max_runs is not None and row.runs_fired >= spec.max_runs:
            return "skipped", "max_runs"
        limit = match.trigger.max_per_minute
        if limit is not None:
            e = event_fires
            recent = (
                await conn.execute(
                    select(func.count()).where(
                        e.c.job_id == match.job_id,
                        e.c.position == match.trigger.position,
                        e.c.outcome == "fired",
                        e.c.recorded_at > func.now() - text("interval '60 seconds'"),
                    )
                )
            ).scalar_one()
            if recent >= limit:
                return "rate_limited", f"max_per_minute {limit}"
        if spec.overlap_policy == "forbid" and running:
            return "skipped", "overlap"
        return "fired", None

    @staticmethod
    def _run(
        event: CloudEvent,
        row: Any,
        spec: JobSpec,
        execution_id: uuid.UUID,
        now: datetime,
        *,
        parameters: dict[str, Any],
    ) -> Outgoing:
        return run_requested(
            execution_id=execution_id,
            job_id=row.job_id,
            account_id=row.account_id,
            job_version=row.job_version,
            spec=spec,
            parameters=parameters,
            trigger="event",
            requested_at=now,
            event=event,
        )

    @staticmethod
    async def _count_run(conn: AsyncConnection, row: Any, spec: JobSpec) -> None:
        """One more run toward ``max_runs``; reaching it completes the job."""
        s = schedules
        values: dict[str, Any] = {"runs_fired": s.c.runs_fired + 1, "updated_at": func.now()}
        if spec.max_runs is not None and row.runs_fired + 1 >= spec.max_runs:
            values |= {"state": "completed", "next_fire_at": None}
        await conn.execute(update(s).where(s.c.job_id == row.job_id).values(**values))
