"""``automation.dead`` into the ``dead_letters`` table, and dead letters back onto the broker.

:class:`DeadLetterConsumer` is deliberately not an ``automation_messaging.Consumer``: that runner parses
every body as a CloudEvent and dead-letters what it cannot handle, and a dead letter may be anything,
while dead-lettering from this queue would feed the queue itself. So this consumer never parses a
body and never dead-letters: a message is acknowledged once stored (or found already stored), and a
message it cannot store (the database is down) is requeued after a backoff that grows with its
deliveries up to ``AUTOMATION_DEAD_LETTERS_RETRY_MAX_SECONDS``.

It reports the queue as every consumer does (:class:`automation_core.metrics.QueueMetrics`, created at its
start): ``automation_messages_received_total`` per delivery, ``automation_messages_consumed_total`` with
outcome ``acked`` or ``requeued`` (never ``dead_lettered``, at 0 like the others) and
``automation_message_handling_duration_seconds`` from the delivery to its outcome.

The queue is declared exactly as ``automation_messaging.topology.declare_topology`` declares it
(durable, ``x-queue-type`` only: no dead-letter exchange, no delivery limit).

:class:`AmqpRepublisher` publishes requeued letters on a channel of its own with publisher confirms
and ``mandatory``, so a letter no queue takes is refused instead of silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity, DeliveryError

from automation_core.errors import Unavailable
from automation_core.logging import get_logger
from automation_core.metrics import MESSAGES_PUBLISHED, QueueMetrics
from automation_db import utcnow
from automation_job_api.domain.dead_letters import IncomingLetter, letter_from
from automation_job_api.service.dead_letters import Unroutable
from automation_job_api.settings import JobApiSettings
from automation_messaging import Broker
from automation_messaging.consumer import settle
from automation_messaging.topology import DEAD_QUEUE, DLX

log = get_logger(__name__)


async def declare_dead_queue(channel: AbstractChannel, queue_type: str) -> AbstractQueue:
    """``automation.dead`` with exactly the arguments of ``declare_topology``, bound to ``automation.dlx``."""
    queue = await channel.declare_queue(DEAD_QUEUE, durable=True, arguments={"x-queue-type": queue_type})
    await queue.bind(DLX, routing_key="#")
    return queue


class LetterStore(Protocol):
    """Where letters go (:class:`~automation_job_api.service.dead_letters.DeadLetterService`)."""

    async def store(self, letter: IncomingLetter) -> bool: ...


def _deliveries(message: AbstractIncomingMessage) -> int:
    raw = (message.headers or {}).get("x-delivery-count")
    if isinstance(raw, int):
        return raw
    return 1 if message.redelivered else 0


class DeadLetterConsumer:
    """Moves every message of ``automation.dead`` into the ``dead_letters`` table."""

    def __init__(self, broker: Broker, letters: LetterStore, settings: JobApiSettings) -> None:
        self._broker = broker
        self._letters = letters
        self._settings = settings
        self._service = settings.service_name
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: ConsumerTag | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._metrics: QueueMetrics | None = None

    @property
    def metrics(self) -> QueueMetrics:
        """The queue's series (made at :meth:`start`, every outcome at 0)."""
        if self._metrics is None:
            self._metrics = QueueMetrics(self._service, DEAD_QUEUE)
        return self._metrics

    async def start(self) -> None:
        _ = self.metrics  # every series of the queue at 0 before the first letter
        self._channel = await self._broker.channel(prefetch=self._settings.dead_letters_prefetch)
        self._queue = await declare_dead_queue(self._channel, self._settings.amqp_queue_type)
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer_started", queue=DEAD_QUEUE)

    async def stop(self, grace: float) -> None:
        """Stop taking letters, let the ones in hand finish within ``grace``, close the channel."""
        if self._queue is not None and self._tag is not None:
            tag, self._tag = self._tag, None
            with contextlib.suppress(Exception):
                await self._queue.cancel(tag)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self.handle(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Store one letter and ack it; on failure requeue it after a backoff (never dead-letter it).

        Counted as received, then once by outcome (``acked``, ``requeued``), and timed to that outcome.
        """
        metrics = self.metrics
        metrics.received.inc()
        start = time.perf_counter()
        try:
            await self._handle(message, metrics)
        finally:
            metrics.duration.observe(time.perf_counter() - start)

    async def _handle(self, message: AbstractIncomingMessage, metrics: QueueMetrics) -> None:
        letter = letter_from(
            body=message.body,
            headers=message.headers,
            routing_key=message.routing_key,
            message_id=message.message_id,
            content_type=message.content_type,
            message_type=message.type,
            timestamp=message.timestamp,
            received_at=utcnow(),
        )
        try:
            await self._letters.store(letter)
        except asyncio.CancelledError:  # stopped by shutdown: handed back
            await settle(message, ack=False, queue=DEAD_QUEUE)
            metrics.consumed["requeued"].inc()
            raise
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the letter must not be lost
            failures = _deliveries(message) + 1
            delay = min(0.5 * 2 ** min(failures, 16), self._settings.dead_letters_retry_max_seconds)
            log.warning("dead_letter_store_failed", error=repr(exc), failures=failures, retry_in=delay)
            await asyncio.sleep(delay)
            await settle(message, ack=False, queue=DEAD_QUEUE)
            metrics.consumed["requeued"].inc()
            return
        acked = await settle(message, ack=True, queue=DEAD_QUEUE)
        metrics.consumed["acked" if acked else "requeued"].inc()


class AmqpRepublisher:
    """Publishes requeued letters with confirms and ``mandatory`` on a channel of its own."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        return self._channel

    async def __call__(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any],
        message_id: str,
        content_type: str | None,
        message_type: str | None,
    ) -> None:
        """Publish and wait for the confirm; :class:`Unroutable` when the broker cannot deliver it."""
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=message_type,
            timestamp=time.time(),
            app_id=self._broker.service,
        )
        async with self._lock:
            channel = await self._open()
            try:
                target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
                await target.publish(message, routing_key=routing_key, mandatory=True)
            except ChannelNotFoundEntity as exc:
                raise Unroutable(f"exchange {exchange!r} does not exist") from exc
            except DeliveryError as exc:
                raise Unroutable(f"no queue takes routing key {routing_key!r} on exchange {exchange!r}") from exc
            except AMQPError as exc:
                raise Unavailable(f"the broker did not confirm the message: {exc}") from exc
        MESSAGES_PUBLISHED.labels(self._broker.service, exchange or "default", routing_key).inc()

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
