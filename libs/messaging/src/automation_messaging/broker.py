"""The broker connection and the confirmed publisher.

:class:`Broker` holds one robust connection (aio-pika reconnects and restores channels, exchanges,
queues and consumers after a broker restart), declares the topology, and gives a :class:`Publisher`
whose every publish waits for the broker's confirm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from automation_contracts import PLATFORM_EVENT_PREFIXES, CloudEvent
from automation_core.logging import get_logger
from automation_core.metrics import BROKER_CONNECTED, MESSAGES_PUBLISHED
from automation_core.settings import ServiceSettings
from automation_core.tracing import extract_context, get_tracer, inject_headers
from automation_messaging.topology import COMMANDS, EVENTS, declare_topology

CLOUDEVENTS_JSON = "application/cloudevents+json"
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
        with tracer.start_as_current_span(
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
            # Commands must reach a queue: mandatory (with on_return_raises on the channel) makes an
            # unroutable command an error for the caller instead of a silent loss.
            await target.publish(message, routing_key=routing_key, mandatory=exchange == COMMANDS)
        MESSAGES_PUBLISHED.labels(self._service, exchange or "default", routing_key_label(exchange, routing_key)).inc()


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
