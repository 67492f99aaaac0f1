"""The history consumer: everything on ``automation.events`` is kept (origin ``amqp``).

Queue ``event-gateway.history`` is bound to ``automation.events`` with ``#``. The consumer runner has
already checked the envelope (and the data of the platform's own types); an invalid message is
dead-lettered with the reason before it reaches :meth:`HistoryConsumer.handle`. External types are
kept as they are. Storing is idempotent on (source, id), so the gateway's own published events,
already stored when they were posted, are not kept twice, and redeliveries change nothing.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue

from automation_contracts import CloudEvent
from automation_event_gateway.domain.errors import EventRejected
from automation_event_gateway.service import EventService
from automation_event_gateway.settings import EventGatewaySettings
from automation_messaging import DeadLetter, Delivery
from automation_messaging.topology import EVENTS, declare_service_queue

HISTORY_QUEUE = "event-gateway.history"


class HistoryConsumer:
    """Declares the history queue and records each event it delivers."""

    def __init__(self, service: EventService, settings: EventGatewaySettings) -> None:
        self._service = service
        self._settings = settings

    async def declare(self, channel: AbstractChannel) -> AbstractQueue:
        """The durable ``event-gateway.history`` queue, bound to every routing key of ``automation.events``."""
        return await declare_service_queue(
            channel,
            HISTORY_QUEUE,
            [(EVENTS, "#")],
            queue_type=self._settings.amqp_queue_type,
            delivery_limit=self._settings.amqp_delivery_limit,
        )

    async def handle(self, event: CloudEvent, delivery: Delivery) -> None:
        """Record ``event``; one the history cannot keep is dead-lettered with the reason."""
        try:
            await self._service.record(event, producer=delivery.message.app_id)
        except EventRejected as exc:
            raise DeadLetter(f"cannot record event: {exc}") from exc
