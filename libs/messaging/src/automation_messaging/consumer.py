"""The consumer runner: every handled message ends one way: ack, requeue after a delay, or dead-letter.

- The body must be a CloudEvent whose ``data`` validates against its schema; anything else is
  dead-lettered at once with the reason (header ``x-dead-letter-reason``, naming the field at fault),
  and the consumer goes on. A platform type (one of ``EVENT_MODELS``, with its own or no
  ``dataschema``) is checked with its contract model, which accepts what its JSON Schema accepts
  (``libs/contracts`` tests hold the two together) at a tenth of the cost; the handler gets
  the parsed model as :attr:`Delivery.model` (or through :meth:`Delivery.parse`) instead of parsing
  the data again. Any other event naming a schema of ours is checked with the JSON Schema itself.
- An ``accept`` predicate, when given, sees the routing key first: a message it refuses is acked
  unread (no decoding, no validation, no handler), so a queue bound broadly can drop most of its
  traffic cheaply.
- A handler returns normally → ack (and, for a request with ``reply_to``, the returned event is sent
  as the reply first; while this process's connection is down the request is held until the reply
  is sent, or, if the request's channel closed meanwhile, left to its next delivery).
- A handler raises :class:`DeadLetter` → dead-lettered with its reason.
- A handler raises :class:`RetryLater` or anything unexpected → requeued after a short backoff, until
  the message has failed ``AUTOMATION_AMQP_DELIVERY_LIMIT`` times; then it is dead-lettered with the
  last error as reason.
- A handler fails because a service it needs cannot be reached (a refused or broken connection, the
  database shutting down or starting up) → the message is held and the handler tried again after a
  pause until it answers: an outage neither counts towards the delivery limit nor dead-letters
  anything.
- A handler fails because the database refused the message's data (``asyncpg.DataError``, SQLSTATE
  class 22, e.g. a number out of a column's range, wherever in the exception's chain: SQLAlchemy wraps
  it) → dead-lettered at once with ``the database refused its data: …``: the same data would be
  refused at every try.
- The channel closes while a handler runs (the broker restarted, the connection dropped): the
  handler is not cancelled but runs to its end in a task of the consumer's own; its ack is then
  impossible (the broker requeued the message) and the redelivery, on the reconnected channel, is
  handled again by an idempotent handler. The prefetch bounds the handlings in flight across the
  reconnect.

Dead letters are re-published to ``automation.dlx`` (routing key kept, original exchange/queue/routing
key and the reason in headers) with a confirm *before* the original is acked, so nothing is lost.

Metrics (``automation_core.metrics``): every delivery counts once in
``automation_messages_received_total{service,queue}`` and, when it ends, once in
``automation_messages_consumed_total{service,queue,outcome}`` with outcome ``acked``, ``requeued`` or
``dead_lettered`` (a rejected, i.e. invalid, message is dead-lettered); the time between the two goes to
``automation_message_handling_duration_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import aiormq.exceptions
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from pydantic import BaseModel

from automation_contracts import EVENT_MODELS, CloudEvent, ContractError, dataschema_for, parse_data, validate_event
from automation_core.errors import Outage, find_in_chain
from automation_core.logging import get_logger
from automation_core.metrics import QueueMetrics
from automation_core.tracing import extract_context, get_tracer, start_span
from automation_messaging.broker import CONNECTION_ERRORS, Broker
from automation_messaging.topology import DLX, REPLICA_CONTROL_PREFIX

log = get_logger(__name__)
tracer = get_tracer("automation.messaging")
REASON_HEADER = "x-dead-letter-reason"
SERVER_NAMED_PREFIX = "amq.gen-"
HOLD_FIRST_PAUSE_SECONDS = 0.5
HOLD_MAX_PAUSE_SECONDS = 5.0
REPLY_HOLD_MAX_SECONDS = 60.0
"""How long a request is held while its reply cannot be sent before it goes back to its queue."""
"""A message whose handler cannot reach a service it needs is tried again after 0.5 s, 1 s, … 5 s."""
CANCEL_WAIT_SECONDS = 10.0
"""How long :meth:`Consumer.stop` waits for handlers it cancelled to clean up (an executor hands its runs back)."""
M = TypeVar("M", bound=BaseModel)
# Refusals a retry cannot change: the queue exists with other arguments, an entity is missing, access is denied.
_PERMANENT_START_ERRORS = (
    aiormq.exceptions.ChannelPreconditionFailed,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelAccessRefused,
)
_PLATFORM_MODELS: dict[str, tuple[str | None, type[BaseModel]]] = {
    event_type: (dataschema_for(event_type), model) for event_type, model in EVENT_MODELS.items()
}


def queue_label(queue: str) -> str:
    """The metrics label of a queue: its name; ``server-named`` for a broker-named exclusive queue, and
    ``executor.control.<replica>`` for each executor replica's own queue (one label, not one per replica)."""
    if queue.startswith(SERVER_NAMED_PREFIX):
        return "server-named"
    return f"{REPLICA_CONTROL_PREFIX}<replica>" if queue.startswith(REPLICA_CONTROL_PREFIX) else queue


class DeadLetter(Exception):
    """Raise from a handler: the message can never succeed; dead-letter it with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def data_refused(exc: BaseException) -> asyncpg.DataError | None:
    """The ``asyncpg.DataError`` in ``exc``'s chain (causes, contexts, a SQLAlchemy error's ``orig``), if any."""
    found = find_in_chain(exc, lambda error: isinstance(error, asyncpg.DataError))
    return found if isinstance(found, asyncpg.DataError) else None


class RetryLater(Exception):
    """Raise from a handler: a transient failure; requeue after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler may need besides the event."""

    message: AbstractIncomingMessage
    queue: str
    routing_key: str
    delivery_count: int
    model: BaseModel | None = None
    """The event's ``data`` as its platform model, when the runner checked it with that model."""

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers or {})

    def parse(self, event: CloudEvent, model: type[M]) -> M:
        """``event.data`` as ``model``: the runner's parse when it made one, else :func:`parse_data`."""
        if isinstance(self.model, model):
            return self.model
        return parse_data(event, model)


Handler = Callable[[CloudEvent, Delivery], Awaitable[CloudEvent | None]]
QueueFactory = Callable[[AbstractChannel], Awaitable[AbstractQueue]]


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """Times this message was delivered before (quorum queues count; classic ones only flag)."""
    raw = (message.headers or {}).get("x-delivery-count")
    if isinstance(raw, int):
        return raw
    return 1 if message.redelivered else 0


def check_data(event: CloudEvent) -> BaseModel | None:
    """Check ``event.data`` against its schema; returns the parsed model for a platform type.

    Raises :class:`ContractError` naming the field at fault. A platform type whose ``dataschema`` is
    its own (or absent) is parsed with its contract model, which accepts what the JSON Schema accepts
    (see ``automation_contracts.primitives``) at a fraction of jsonschema's cost; anything
    else goes to :func:`validate_event` (a foreign schema on a platform type is refused there).
    """
    known = _PLATFORM_MODELS.get(event.type)
    if known is not None and (event.dataschema is None or event.dataschema == known[0]):
        return parse_data(event, known[1])
    validate_event(event)
    return None


def _ids_from(event: CloudEvent) -> dict[str, str]:
    ids = {"event_type": event.type, "event_id": event.id}
    if isinstance(event.data, dict):
        for key in ("execution_id", "job_id", "task_id"):
            value = event.data.get(key)
            if value is not None:
                ids[key] = str(value)
    return ids


async def settle(message: AbstractIncomingMessage, *, ack: bool, queue: str) -> bool:
    """Ack (or requeue) a delivery; False when its channel closed first: the broker requeued it (logged as
    ``delivery_outlived_its_channel``). Every consumer settles through this, the runner's and those of
    their own (job-api's ``automation.dead``)."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=True)
    except (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
        log.warning(
            "delivery_outlived_its_channel",
            queue=queue,
            settle="ack" if ack else "requeue",
            error=repr(exc),
            detail="the channel closed while the message was handled; the broker requeued it",
        )
        return False
    return True


class Consumer:
    """Consumes one queue with a handler; bounded by the channel's prefetch."""

    # The queue's metric series, labelled once at start: a ``labels()`` look-up per message costs more
    # than the increment.
    _received: Counter
    _duration: Histogram
    _consumed: dict[str, Counter]

    def __init__(
        self,
        broker: Broker,
        *,
        queue: QueueFactory,
        handler: Handler,
        prefetch: int | None = None,
        validate: bool = True,
        max_failures: int | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        self._broker = broker
        self._accept = accept
        self._queue_factory = queue
        self._handler = handler
        self._prefetch = prefetch
        self._validate = validate
        self._max_failures = max_failures or broker.settings.amqp_delivery_limit
        self._service = broker.service
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: ConsumerTag | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._capacity = asyncio.Semaphore(prefetch or broker.settings.amqp_prefetch)
        self.queue_name = ""
        self._queue_label = ""

    async def start(self, *, attempts: int = 6, delay: float = 0.25) -> None:
        """Open the channel, declare the queue and start consuming.

        A transient refusal is retried on a fresh channel, with the delay doubling up to 2 s: RabbitMQ
        can answer ``basic.consume`` on a quorum queue it has just declared with ``INTERNAL_ERROR``
        while the queue's Raft member is still starting, and a robust connection may be reconnecting.
        A refusal that no retry can change (an inequivalent declaration, a missing entity, access
        refused) is raised at once, as is the last error after ``attempts`` tries.
        """
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once()
            except _PERMANENT_START_ERRORS:
                raise
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
                if attempt == attempts:
                    raise
                await self._discard_channel()
                pause = min(delay * 2 ** (attempt - 1), 2.0)
                log.warning(
                    "consumer_start_retry",
                    queue=self.queue_name or None,
                    attempt=attempt,
                    error=repr(exc),
                    retry_in=pause,
                )
                await asyncio.sleep(pause)
            else:
                return

    async def _discard_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # the channel is being replaced either way
                await channel.close()

    async def _start_once(self) -> None:
        self._channel = await self._broker.channel(prefetch=self._prefetch)
        self._queue = await self._queue_factory(self._channel)
        self.queue_name = self._queue.name
        self._queue_label = queue_label(self.queue_name)
        metrics = QueueMetrics(self._service, self._queue_label)
        self._received, self._duration, self._consumed = metrics.received, metrics.duration, metrics.consumed
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer_started", queue=self.queue_name)

    async def cancel(self) -> None:
        """Stop taking new messages (idempotent); handlers in flight go on and the channel stays open."""
        if self._queue is not None and self._tag is not None:
            tag, self._tag = self._tag, None
            try:
                await self._queue.cancel(tag)
            except Exception as exc:  # noqa: BLE001 - closing the channel anyway
                log.warning("consumer_cancel_failed", queue=self.queue_name, error=str(exc))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let handlers in flight finish within ``grace``, close the channel.

        A handler still running after ``grace`` is cancelled (its message is requeued) and gets up to
        :data:`CANCEL_WAIT_SECONDS` to finish its clean-up before the channel closes.
        """
        await self.cancel()
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=grace)
            for task in pending:
                task.cancel("the consumer is stopping")
            if pending:
                await asyncio.wait(pending, timeout=CANCEL_WAIT_SECONDS)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Run the delivery's handling in a task of the consumer's own.

        The channel runs this callback in a task it cancels when it closes (the broker restarted, the
        connection dropped). The handling goes on regardless: a run half done is not thrown away for a
        network blip. Its ack is then impossible; the broker has requeued the message and the
        redelivery finds the work done (handlers are idempotent). The capacity (the prefetch) bounds
        the handlings in flight, so those that outlive their channel count against the new one's.
        """
        await self._capacity.acquire()
        work = asyncio.create_task(self._process(message))
        self._in_flight.add(work)
        work.add_done_callback(self._handled)
        await asyncio.shield(work)

    def _handled(self, work: asyncio.Task[None]) -> None:
        self._in_flight.discard(work)
        self._capacity.release()
        if not work.cancelled() and (exc := work.exception()) is not None:
            log.error("delivery_handling_crashed", queue=self.queue_name, error=repr(exc))

    async def _process(self, message: AbstractIncomingMessage) -> None:
        start = time.perf_counter()
        queue = self.queue_name
        self._received.inc()
        parent = extract_context(message.headers)
        token = otel_context.attach(parent)
        try:
            with (
                start_span(
                    tracer,
                    f"{queue} process",
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "rabbitmq",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": queue,
                        "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
                        "messaging.message.id": message.message_id or "",
                    },
                ) as span,
                structlog.contextvars.bound_contextvars(queue=queue),
            ):
                outcome = await self._dispatch(message)
                if outcome != "acked":
                    span.set_status(Status(StatusCode.ERROR, outcome))
        finally:
            otel_context.detach(token)
            self._duration.observe(time.perf_counter() - start)

    async def _dispatch(self, message: AbstractIncomingMessage) -> str:
        if self._accept is not None and not self._accept(message.routing_key or ""):
            return await self._ack(message, "acked")  # filtered by routing key alone: never decoded
        try:
            event = CloudEvent.from_json_bytes(message.body)
            model = check_data(event) if self._validate else None
        except ContractError as exc:
            return await self._dead_letter(message, f"invalid message: {exc}")
        delivery = Delivery(message, self.queue_name, message.routing_key or "", _delivery_count(message), model)
        with structlog.contextvars.bound_contextvars(**_ids_from(event)):
            try:
                reply = await self._handle(event, delivery)
            except DeadLetter as exc:
                return await self._dead_letter(message, exc.reason)
            except RetryLater as exc:
                return await self._requeue(message, delivery, exc.reason, exc.delay)
            except asyncio.CancelledError:
                await self._settle(message, ack=False)
                self._consumed["requeued"].inc()
                raise
            except Exception as exc:
                log.exception("handler_failed", error=repr(exc))
                return await self._failed(message, delivery, exc)
            return await self._answered(message, reply)

    async def _handle(self, event: CloudEvent, delivery: Delivery) -> CloudEvent | None:
        """The handler's answer. While it fails because a service it needs cannot be reached (the
        database restarting, say: :func:`~automation_core.errors.unreachable_dependency`), the message
        is held, neither acked nor requeued, so an outage does not count towards the delivery limit,
        and the handler is called again after a pause (doubling up to :data:`HOLD_MAX_PAUSE_SECONDS`).
        A full prefetch window of held messages stops the deliveries until the service is back."""
        outage: Outage | None = None  # made at the first failure: nothing added to a message that goes through
        while True:
            try:
                reply = await self._handler(event, delivery)
            except (DeadLetter, RetryLater):
                raise
            except Exception as exc:  # noqa: BLE001 - Outage.pause raises it again unless an outage
                outage = outage or Outage(
                    started="message_held_dependency_unreachable",
                    ended="message_released_dependency_back",
                    first=HOLD_FIRST_PAUSE_SECONDS,
                    cap=HOLD_MAX_PAUSE_SECONDS,
                )
                await asyncio.sleep(outage.pause(exc))
                continue
            if outage is not None:
                outage.over()
            return reply

    async def _failed(self, message: AbstractIncomingMessage, delivery: Delivery, exc: Exception) -> str:
        """A handler failed unexpectedly: requeued (see :meth:`_requeue`), or dead-lettered at once when the
        database refused the message's data, which no other try would change."""
        refused = data_refused(exc)
        if refused is not None:
            first_line = next(iter(str(refused).splitlines()), "")
            return await self._dead_letter(
                message, f"the database refused its data: {type(refused).__name__}: {first_line}"
            )
        return await self._requeue(message, delivery, f"{type(exc).__name__}: {exc}", None)

    async def _answered(self, message: AbstractIncomingMessage, reply: CloudEvent | None) -> str:
        """Ack a handled message, its reply (if any) sent first; requeue it when the reply could not be
        sent, for its next delivery to answer."""
        if reply is not None and message.reply_to and not await self._reply(message, reply):
            await self._settle(message, ack=False)
            self._consumed["requeued"].inc()
            return "requeued"
        return await self._ack(message, "acked")

    async def _reply(self, message: AbstractIncomingMessage, reply: CloudEvent) -> bool:
        """Send ``reply`` to the request's ``reply_to``; False when the request must go back to its
        queue unacked, for its next delivery to answer.

        Acking a request whose reply was never sent would lose the answer. So while this process's
        connection is down (or its publishing channel is being restored), the request is held and the
        reply sent again after a pause, as long as the request's own channel lives (once it has closed,
        the broker has requeued the request) and for at most :data:`REPLY_HOLD_MAX_SECONDS`. A reply
        refused for another reason (its caller is gone) is dropped, and the request acked.
        """
        outage: Outage | None = None  # made at the first failure
        give_up = time.monotonic() + REPLY_HOLD_MAX_SECONDS
        while True:
            try:
                await self._broker.publisher.publish(
                    reply, exchange="", routing_key=message.reply_to or "", correlation_id=message.correlation_id
                )
            except CONNECTION_ERRORS as exc:
                if message.channel.is_closed or time.monotonic() >= give_up:
                    log.warning("reply_not_delivered", error=repr(exc), detail="the request goes back to its queue")
                    return False
                outage = outage or Outage(
                    started="reply_waits_for_broker",
                    ended="reply_sent_broker_back",
                    first=HOLD_FIRST_PAUSE_SECONDS / 2,
                    cap=HOLD_MAX_PAUSE_SECONDS,
                )
                await asyncio.sleep(outage.pause(exc))
            except Exception as exc:  # noqa: BLE001 - the caller is gone; its reply has no one to go to
                log.warning("reply_not_delivered", error=repr(exc))
                return True
            else:
                if outage is not None:
                    outage.over()
                return True

    async def _ack(self, message: AbstractIncomingMessage, outcome: str) -> str:
        """Ack and count ``outcome``; ``requeued`` when the channel closed first (the broker requeued it)."""
        if not await self._settle(message, ack=True):
            outcome = "requeued"
        self._consumed[outcome].inc()
        return outcome

    async def _settle(self, message: AbstractIncomingMessage, *, ack: bool) -> bool:
        return await settle(message, ack=ack, queue=self.queue_name)

    async def _requeue(
        self, message: AbstractIncomingMessage, delivery: Delivery, reason: str, delay: float | None
    ) -> str:
        failures = delivery.delivery_count + 1
        if failures >= self._max_failures:
            return await self._dead_letter(message, f"failed {failures} times; last error: {reason}")
        await asyncio.sleep(delay if delay is not None else min(0.2 * 2**failures, 5.0))
        await self._settle(message, ack=False)
        self._consumed["requeued"].inc()
        log.warning("message_requeued", reason=reason, failures=failures)
        return "requeued"

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> str:
        headers = dict(message.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:2000],
                "x-original-exchange": message.exchange or "",
                "x-original-routing-key": message.routing_key or "",
                "x-original-queue": self.queue_name,
                "x-dead-lettered-at": datetime.now(UTC).isoformat(),
                "x-dead-lettered-by": self._service,
            }
        )
        try:
            await self._broker.publisher.publish_raw(
                message.body,
                exchange=DLX,
                routing_key=message.routing_key or self.queue_name,
                headers=headers,
                message_id=message.message_id,
                message_type=message.type,
                content_type=message.content_type or "application/octet-stream",
            )
        except Exception as exc:
            log.exception("dead_letter_publish_failed", error=repr(exc))
            await self._settle(message, ack=False)
            self._consumed["requeued"].inc()
            return "requeued"
        log.warning("message_dead_lettered", reason=reason)
        return await self._ack(message, "dead_lettered")  # dead-lettered again if it comes back
