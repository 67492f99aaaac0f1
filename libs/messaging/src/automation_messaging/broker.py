"""The broker connection and the confirmed publisher.

:class:`Broker` holds one robust connection (aio-pika reconnects and restores channels, exchanges,
queues and consumers after a broker restart), declares the topology, and gives a :class:`Publisher`
whose every publish waits for the broker's confirm.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq.abc import ChannelFrame
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pamqp.header import ContentHeader

from automation_contracts import PLATFORM_EVENT_PREFIXES, CloudEvent
from automation_core.logging import get_logger
from automation_core.metrics import BROKER_CONNECTED, MESSAGES_PUBLISHED
from automation_core.settings import ServiceSettings
from automation_core.tracing import extract_context, get_tracer, inject_headers, start_span
from automation_messaging.topology import EVENTS, MANDATORY_EXCHANGES, declare_topology

CLOUDEVENTS_JSON = "application/cloudevents+json"
PUBLISHED_AT_HEADER = "x-published-at"
"""Header :meth:`Publisher.send_many` adds: when the batch was written, in Unix milliseconds."""
PUBLISH_BATCH_TIMEOUT_SECONDS = 30.0
CONNECTION_ERRORS = (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPConnectionError, ConnectionError)
"""What a publish raises while this process's broker connection is down or its channel is being restored."""
"""Longest a :meth:`Publisher.publish_many` batch waits for its write and confirms."""
log = get_logger(__name__)
tracer = get_tracer("automation.messaging")


def routing_key_label(exchange: str, routing_key: str) -> str:
    """The metrics label of a routing key: the platform's own keys by name, anything else as a class.

    Event types on ``automation.events`` come from other services and users; labelling them by name
    would let anyone create series at will, so only the platform's own types keep their name.
    """
    if not exchange:
        return "reply"
    if exchange == EVENTS and routing_key.split(".", 1)[0] not in PLATFORM_EVENT_PREFIXES:
        return "external"
    return routing_key


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message of :meth:`Publisher.publish_many`: a body as it is and its AMQP envelope."""

    body: bytes
    exchange: str
    routing_key: str
    message_id: str
    message_type: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None


class PublishReturned(Exception):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class Publisher:
    """Publishes CloudEvents (or raw outbox bodies) with publisher confirms and trace context."""

    def __init__(self, channel: AbstractChannel, service: str) -> None:
        self._channel = channel
        self._service = service
        self._exchanges: dict[str, AbstractExchange] = {}
        self._lock = asyncio.Lock()

    async def _exchange(self, name: str) -> AbstractExchange:
        if name == "":
            return self._channel.default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            async with self._lock:
                exchange = self._exchanges.get(name) or await self._channel.get_exchange(name, ensure=False)
                self._exchanges[name] = exchange
        return exchange

    async def publish(
        self,
        event: CloudEvent,
        *,
        exchange: str,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Publish ``event`` (routing key defaults to its type) and wait for the confirm."""
        await self.publish_raw(
            event.to_json_bytes(),
            exchange=exchange,
            routing_key=routing_key or event.type,
            headers=headers,
            message_id=event.id,
            message_type=event.type,
            reply_to=reply_to,
            correlation_id=correlation_id,
            priority=priority,
        )

    async def publish_raw(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        message_type: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        priority: int | None = None,
        content_type: str = CLOUDEVENTS_JSON,
    ) -> None:
        """Publish a body as it is, in a PRODUCER span whose context the message carries on.

        The span's parent is the current span when there is one (a publish in a request or a
        handler), otherwise the ``traceparent`` in ``headers`` (an outbox row's captured context).
        """
        active = trace.get_current_span().get_span_context().is_valid
        with start_span(
            tracer,
            f"{exchange or 'default'} publish",
            context=None if active else extract_context(headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "publish",
                "messaging.destination.name": exchange,
                "messaging.rabbitmq.destination.routing_key": routing_key,
                "messaging.message.id": message_id or "",
            },
        ):
            amqp_headers: dict[str, Any] = dict(headers or {})
            inject_headers(amqp_headers)
            message = aio_pika.Message(
                body,
                headers=amqp_headers,
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                type=message_type,
                reply_to=reply_to,
                correlation_id=correlation_id,
                priority=priority,
                timestamp=time.time(),
                app_id=self._service,
            )
            target = await self._exchange(exchange)
            # Commands and retries must reach a queue: mandatory (with on_return_raises on the channel)
            # makes an unroutable one an error for the caller instead of a silent loss.
            await target.publish(message, routing_key=routing_key, mandatory=exchange in MANDATORY_EXCHANGES)
        MESSAGES_PUBLISHED.labels(self._service, exchange or "default", routing_key_label(exchange, routing_key)).inc()

    async def publish_many(self, messages: Sequence[RawMessage]) -> list[BaseException | None]:
        """Publish a batch with confirms; one result per message (None: confirmed).

        :meth:`send_many`, then wait for its confirms.
        """
        return await (await self.send_many(messages))

    async def send_many(self, messages: Sequence[RawMessage]) -> asyncio.Future[list[BaseException | None]]:
        """Write a batch and return, without waiting for the broker's confirms, a future of one result
        per message (None: confirmed; else the error: nack, return of an unroutable command, lost channel).

        The fast path for high rates (the scheduler's fire dispatch): the frames go straight to the
        channel underneath aio-pika in one write, so a caller can send the next batch while the broker
        confirms this one. The batch has one PRODUCER span whose context every message carries (a
        message's own ``traceparent`` header, e.g. an outbox row's captured context, is kept), and every
        message carries :data:`PUBLISHED_AT_HEADER`, the instant of the write in Unix milliseconds (the
        AMQP ``timestamp`` has one-second resolution). Commands and retries are published mandatory, as
        :meth:`publish_raw` does.
        """
        loop = asyncio.get_running_loop()
        if not messages:
            done: asyncio.Future[list[BaseException | None]] = loop.create_future()
            done.set_result([])
            return done
        now = datetime.now(UTC).replace(microsecond=0)
        span_name, span_attributes = _batch_span(messages)
        with start_span(tracer, span_name, kind=SpanKind.PRODUCER, attributes=span_attributes):
            context: dict[str, Any] = {}
            inject_headers(context)
            context[PUBLISHED_AT_HEADER] = int(time.time() * 1000)
            channel = await self._channel.get_underlay_channel()
            framed = []
            for m in messages:
                headers = {**context, **m.headers}
                properties = aiormq.spec.Basic.Properties(
                    content_type=CLOUDEVENTS_JSON,
                    delivery_mode=2,
                    headers=headers,
                    message_id=m.message_id,
                    message_type=m.message_type,
                    priority=m.priority,
                    timestamp=now,
                    app_id=self._service,
                )
                framed.append((m, properties))
            if isinstance(channel, aiormq.Channel) and channel.publisher_confirms:
                confirms = await _write_batch(channel, framed)
            else:  # the documented path, one publish call per message
                confirms = [
                    asyncio.ensure_future(
                        channel.basic_publish(
                            m.body,
                            exchange=m.exchange,
                            routing_key=m.routing_key,
                            properties=properties,
                            mandatory=m.exchange in MANDATORY_EXCHANGES,
                        )
                    )
                    for m, properties in framed
                ]
        return asyncio.ensure_future(self._confirmed(messages, confirms))

    async def _confirmed(
        self, messages: Sequence[RawMessage], confirms: Sequence[asyncio.Future[Any]]
    ) -> list[BaseException | None]:
        async with asyncio.timeout(PUBLISH_BATCH_TIMEOUT_SECONDS):
            outcomes = await asyncio.gather(*confirms, return_exceptions=True)
        results: list[BaseException | None] = []
        sent: Counter[tuple[str, str]] = Counter()
        for m, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results.append(outcome)
            elif not isinstance(outcome, aiormq.spec.Basic.Ack):  # a returned message comes back as itself
                results.append(PublishReturned(f"returned by the broker: no queue for {m.routing_key!r}"))
            else:
                results.append(None)
                sent[(m.exchange or "default", routing_key_label(m.exchange, m.routing_key))] += 1
        for (exchange, label), count in sent.items():
            MESSAGES_PUBLISHED.labels(self._service, exchange, label).inc(count)
        return results


def _batch_span(messages: Sequence[RawMessage]) -> tuple[str, dict[str, Any]]:
    """Name and attributes of a batch's PRODUCER span: ``<exchange> publish`` with the destination and
    routing key when the whole batch shares them (and the message id of a batch of one), as a single
    publish's span has; ``publish batch`` otherwise."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "publish",
        "messaging.batch.message_count": len(messages),
    }
    exchanges = {m.exchange for m in messages}
    if len(exchanges) != 1:
        return "publish batch", attributes
    (exchange,) = exchanges
    attributes["messaging.destination.name"] = exchange
    keys = {m.routing_key for m in messages}
    if len(keys) == 1:
        attributes["messaging.rabbitmq.destination.routing_key"] = next(iter(keys))
    if len(messages) == 1:
        attributes["messaging.message.id"] = messages[0].message_id
    return f"{exchange or 'default'} publish", attributes


async def _write_batch(
    channel: aiormq.Channel, framed: Sequence[tuple[RawMessage, aiormq.spec.Basic.Properties]]
) -> list[asyncio.Future[Any]]:
    """Write a batch on a confirming channel in one socket write; returns one confirmation per message.

    ``basic_publish`` costs a lock round, a timeout scope and a socket write per message, which is most
    of the CPU of a high-rate publisher. This does what it does for each message (next delivery tag, a
    confirmation future registered where aiormq's confirm and return handlers look for it, and which a
    closing channel fails) under one hold of the channel lock, and queues all the frames as one write.
    """
    futures: list[asyncio.Future[Any]] = []
    frames: list[Any] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(PUBLISH_BATCH_TIMEOUT_SECONDS), channel.lock:
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        for m, properties in framed:
            channel.delivery_tag += 1
            tag = channel.delivery_tag
            # A plain future (not the channel's future store, whose bookkeeping per future costs more
            # than the publish): a closing channel fails the batch through the callback below.
            confirmation = loop.create_future()
            channel.confirmations[tag] = confirmation
            channel.message_id_delivery_tag[m.message_id] = tag
            confirmation.add_done_callback(functools.partial(_forget_message_id, channel, m.message_id, tag))
            futures.append(confirmation)
            frames.append(
                aiormq.spec.Basic.Publish(
                    exchange=m.exchange, routing_key=m.routing_key, mandatory=m.exchange in MANDATORY_EXCHANGES
                )
            )
            frames.append(ContentHeader(properties=properties, body_size=len(m.body)))
            frames.extend(channel._split_body(m.body))
        closing = channel.closing
        on_close = functools.partial(_fail_pending, futures)
        closing.add_done_callback(on_close)
        for confirmation in futures[-1:]:  # confirms arrive in order: the last one settles the batch
            confirmation.add_done_callback(lambda _: closing.remove_done_callback(on_close))
        drained = channel.create_future()
        await channel.write_queue.put(
            ChannelFrame.marshall(channel_number=channel.number, frames=frames, drain_future=drained)
        )
        await drained
    return futures


def _fail_pending(futures: list[asyncio.Future[Any]], closing: asyncio.Future[Any]) -> None:
    """The channel closed: fail the batch's confirms still pending (as aiormq fails its own)."""
    reason: BaseException = aiormq.exceptions.ChannelInvalidStateError("the channel closed before the confirms")
    if not closing.cancelled() and closing.exception() is not None:
        reason = closing.exception() or reason
    for confirmation in futures:
        if not confirmation.done():
            confirmation.set_exception(reason)


def _forget_message_id(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)


class Broker:
    """One robust AMQP connection per service process."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.service = settings.service_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._closing = False

    async def connect(self, *, attempts: int = 30, delay: float = 1.0) -> None:
        """Connect (retrying while the broker starts), open the publishing channel, declare the topology."""
        url = self.settings.amqp_url.get_secret_value()
        last: Exception | None = None
        for _ in range(attempts):
            try:
                self._connection = await aio_pika.connect_robust(
                    url, client_properties={"connection_name": self.service}, timeout=10
                )
                break
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                last = exc
                log.warning("broker_connect_failed", error=str(exc))
                await asyncio.sleep(delay)
        else:
            raise ConnectionError(f"cannot reach RabbitMQ at the configured AMQP URL: {last}")
        assert self._connection is not None
        self._connection.close_callbacks.add(self._on_close)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(
            self._channel,
            queue_type=self.settings.amqp_queue_type,
            delivery_limit=self.settings.amqp_delivery_limit,
        )
        self._publisher = Publisher(self._channel, self.service)
        BROKER_CONNECTED.labels(self.service).set(1)
        log.info("broker_connected")

    def _on_close(self, *_: Any) -> None:
        BROKER_CONNECTED.labels(self.service).set(0)
        if not self._closing:
            log.warning("broker_connection_lost")

    def _on_reconnect(self, *_: Any) -> None:
        BROKER_CONNECTED.labels(self.service).set(1)
        log.info("broker_reconnected")

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("broker is not connected")
        return self._connection

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("broker is not connected")
        return self._publisher

    async def channel(self, *, prefetch: int | None = None, confirms: bool = True) -> AbstractChannel:
        """A new channel (one per consumer, with its own prefetch)."""
        channel = await self.connection.channel(publisher_confirms=confirms)
        await channel.set_qos(prefetch_count=prefetch or self.settings.amqp_prefetch)
        return channel

    async def check(self) -> None:
        """Readiness: raises while the connection is down."""
        if self._connection is None or self._connection.is_closed or not self._connection.connected.is_set():
            raise ConnectionError("broker connection is down")

    async def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            await self._connection.close()
        BROKER_CONNECTED.labels(self.service).set(0)
