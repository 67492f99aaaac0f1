"""The ``browser-pool.tasks`` consumer: a ``browser.task`` in, its ``browser.result`` reply out.

The consumer runner has already checked the body against the ``browser.task`` schema (anything
else is dead-lettered with the reason). The handler returns the reply event; the runner sends it to
the request's ``reply_to`` with its correlation id, then acks. A task that fails in the page is a
normal reply with ``ok=false``; only a message that can never be a task is dead-lettered.
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue

from automation_browser_pool.service import BrowserTaskService
from automation_contracts import BrowserTask, CloudEvent, ContractError, build_event
from automation_messaging import DeadLetter, Delivery
from automation_messaging.consumer import QueueFactory
from automation_messaging.topology import BROWSER_TASK, BROWSER_TASKS, WORK_QUEUES, declare_work_queue

SOURCE = "/automation/browser-pool"
RESULT_TYPE = "browser.result"


def tasks_queue(*, queue_type: str, delivery_limit: int) -> QueueFactory:
    """Queue factory of ``browser-pool.tasks``, declared exactly as the shared topology declares it."""
    spec = next(s for s in WORK_QUEUES if s.name == BROWSER_TASKS)

    async def declare(channel: AbstractChannel) -> AbstractQueue:
        return await declare_work_queue(channel, spec, queue_type=queue_type, delivery_limit=delivery_limit)

    return declare


class BrowserTaskHandler:
    """Handles one ``browser.task`` delivery."""

    def __init__(self, service: BrowserTaskService[Any]) -> None:
        self._service = service

    async def __call__(self, event: CloudEvent, delivery: Delivery) -> CloudEvent:
        if event.type != BROWSER_TASK:
            raise DeadLetter(f"unexpected event type {event.type!r} on {delivery.queue} (expected {BROWSER_TASK!r})")
        try:
            task = delivery.parse(event, BrowserTask)
        except ContractError as exc:
            raise DeadLetter(f"invalid browser.task: {exc}") from exc
        result = await self._service.answer(task, sent_at=event.time)
        return build_event(RESULT_TYPE, source=SOURCE, data=result, subject=str(task.task_id))
