"""Execution events into the read model: queue ``job-api.execution-events`` bound to ``execution.*``.

Each event is checked against its schema by the consumer runner, parsed into its model here and
applied monotonically (see :mod:`automation_job_api.domain.executions`); events handled at the same
time are written in one transaction (see :mod:`automation_job_api.service.executions`), so the
consumer's prefetch (``AUTOMATION_EXECUTION_EVENTS_PREFETCH``, else ``AUTOMATION_AMQP_PREFETCH``)
bounds a batch. The per-event ``execution_event_recorded`` line is at DEBUG. Messages that can never be
applied (no model, wrong shape, an execution id already recorded for another job or account) are
dead-lettered with the reason; duplicates and stale events are acknowledged without effect.
"""

from __future__ import annotations

from typing import Any, cast

from aio_pika.abc import AbstractChannel, AbstractQueue

from automation_contracts import EVENT_MODELS, CloudEvent, ContractError, ExecutionStarted
from automation_core.logging import get_logger
from automation_core.settings import ServiceSettings
from automation_job_api.domain.executions import TRIGGERS, TriggerName
from automation_job_api.service.executions import ExecutionService, ForeignExecution, RunFacts
from automation_messaging import DeadLetter, Delivery
from automation_messaging.topology import EVENTS, declare_service_queue

EXECUTION_EVENTS_QUEUE = "job-api.execution-events"
RECORDED_TYPES = frozenset(
    {
        "execution.started",
        "execution.log",
        "execution.succeeded",
        "execution.failed",
        "execution.timed_out",
        "execution.cancelled",
    }
)
log = get_logger(__name__)


def trigger_of(event: CloudEvent) -> TriggerName | None:
    """The run's trigger when the event says it (``data.trigger`` of ``execution.started``, or a
    ``trigger`` extension), else None.

    Manual runs have their row (trigger ``manual``) before any event; other runs get theirs from
    ``execution.started``, which copies it from ``run.requested``.
    """
    candidates = [event.data.get("trigger") if isinstance(event.data, dict) else None, event.extensions.get("trigger")]
    for value in candidates:
        if value in TRIGGERS:
            return cast(TriggerName, value)
    return None


def facts_of(data: object) -> RunFacts | None:
    """What ``execution.started`` copied from ``run.requested`` (version, parameters, when it was asked
    for), or None: other events, and starts from executors that predate those fields, carry none."""
    if not isinstance(data, ExecutionStarted):
        return None
    if data.job_version is None and data.parameters is None and data.requested_at is None:
        return None
    return RunFacts(data.job_version, data.parameters, data.requested_at)


class ExecutionEventsConsumer:
    """Declares the queue and handles its messages."""

    def __init__(self, executions: ExecutionService, settings: ServiceSettings) -> None:
        self._executions = executions
        self._settings = settings

    async def declare(self, channel: AbstractChannel) -> AbstractQueue:
        """The durable queue bound to ``automation.events`` with ``execution.*``."""
        return await declare_service_queue(
            channel,
            EXECUTION_EVENTS_QUEUE,
            [(EVENTS, "execution.*")],
            queue_type=self._settings.amqp_queue_type,
            delivery_limit=self._settings.amqp_delivery_limit,
        )

    async def handle(self, event: CloudEvent, delivery: Delivery) -> CloudEvent | None:
        """Record one execution event."""
        if event.type not in RECORDED_TYPES:
            raise DeadLetter(f"job-api does not record {event.type!r} events")
        try:
            data = delivery.parse(event, EVENT_MODELS[event.type])
        except ContractError as exc:
            raise DeadLetter(f"invalid {event.type}: {exc}") from exc
        named: Any = data  # every model recorded here names its execution, job and account
        try:
            changed = await self._executions.record(
                event.type,
                data,
                execution_id=named.execution_id,
                account_id=named.account_id,
                job_id=named.job_id,
                trigger=trigger_of(event),
                scheduled_for=data.scheduled_for if isinstance(data, ExecutionStarted) else None,
                facts=facts_of(data),
            )
        except ForeignExecution as exc:
            raise DeadLetter(str(exc)) from exc
        log.debug("execution_event_recorded", changed=changed, attempt=getattr(data, "attempt", None))
        return None
