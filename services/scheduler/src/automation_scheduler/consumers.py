"""The ``job.*`` consumer: job versions from ``automation.events`` into schedule rows.

Queue ``scheduler.job-events`` (durable, bound to ``job.*``). The consumer runner has already checked
the envelope and the data against its schema (anything else is dead-lettered with the reason); here a
``job.created|updated|deleted`` is applied idempotently on the job version, a schedule the scheduler
cannot parse is dead-lettered (it can never succeed), and other ``job.*`` types are acked and ignored.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue

from automation_contracts import CloudEvent, ContractError, JobChanged, JobDeleted, parse_data
from automation_core.logging import get_logger
from automation_messaging import DeadLetter, Delivery
from automation_messaging.topology import EVENTS, declare_service_queue
from automation_schedule import ScheduleError
from automation_scheduler.service import JobVersionIn, ScheduleService
from automation_scheduler.settings import SchedulerSettings

log = get_logger(__name__)
JOB_EVENTS_QUEUE = "scheduler.job-events"
JOB_EVENTS_BINDING = "job.*"
# JobSpec names of the schedule library's fields, for dead-letter reasons.
SPEC_FIELDS = {"gap": "dst_gap", "overlap": "dst_overlap"}


class JobEventsQueue:
    """Declares ``scheduler.job-events`` (a queue factory for ``Runtime.consume``)."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self._settings = settings

    async def __call__(self, channel: AbstractChannel) -> AbstractQueue:
        return await declare_service_queue(
            channel,
            JOB_EVENTS_QUEUE,
            [(EVENTS, JOB_EVENTS_BINDING)],
            queue_type=self._settings.amqp_queue_type,
            delivery_limit=self._settings.amqp_delivery_limit,
        )


def job_version_from(event: CloudEvent) -> JobVersionIn | None:
    """The job version a ``job.*`` event carries; None for types the scheduler does not handle.

    Raises ``ContractError`` when the data does not fit the type's model.
    """
    if event.type in ("job.created", "job.updated"):
        changed = parse_data(event, JobChanged)
        return JobVersionIn(
            job_id=changed.job_id,
            account_id=changed.account_id,
            version=changed.version,
            changed_at=changed.changed_at,
            spec=changed.job,
        )
    if event.type == "job.deleted":
        deleted = parse_data(event, JobDeleted)
        return JobVersionIn(
            job_id=deleted.job_id,
            account_id=deleted.account_id,
            version=deleted.version,
            changed_at=deleted.deleted_at,
            spec=None,
        )
    return None


class JobEventsHandler:
    """Handles one ``job.*`` delivery."""

    def __init__(self, service: ScheduleService) -> None:
        self._service = service

    async def __call__(self, event: CloudEvent, _delivery: Delivery) -> CloudEvent | None:
        try:
            change = job_version_from(event)
        except ContractError as exc:
            raise DeadLetter(f"invalid {event.type}: {exc}") from exc
        if change is None:
            log.info("job_event_ignored", reason="unhandled type")
            return None
        try:
            await self._service.apply(change)
        except ScheduleError as exc:
            raise DeadLetter(f"data.job.{SPEC_FIELDS.get(exc.field, exc.field)}: {exc.reason}") from exc
        return None
