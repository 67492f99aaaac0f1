"""Request/reply over RabbitMQ with direct reply-to (``amq.rabbitmq.reply-to``).

The caller publishes a command with ``reply_to`` and a correlation id and awaits the reply event;
the server side is an ordinary :class:`~automation_messaging.consumer.Consumer` whose handler returns
the reply. A direct reply-to reply goes to the channel that sent the request, so when that channel
closes (the broker restarted, the connection dropped) the calls still waiting fail at once with
:class:`RpcConnectionLost` instead of at their deadline.
"""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from automation_contracts import CloudEvent, ContractError
from automation_messaging.broker import Broker, Publisher
from automation_messaging.topology import COMMANDS

REPLY_TO = "amq.rabbitmq.reply-to"


class RpcTimeout(TimeoutError):
    """No reply within the deadline."""


class RpcConnectionLost(ConnectionError):
    """The channel the reply was to come on closed first (the broker restarted, the connection
    dropped): a direct reply-to reply cannot follow the caller to a new channel."""


class RpcClient:
    """Sends commands and awaits their replies on a dedicated channel."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._pending: dict[str, asyncio.Future[CloudEvent]] = {}

    async def start(self) -> None:
        self._channel = await self._broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel.close_callbacks.add(self._on_close)
        queue = await self._channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)
        self._publisher = Publisher(self._channel, self._broker.service)

    async def stop(self) -> None:
        for future in self._pending.values():
            future.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def _on_close(self, *_: object) -> None:
        """Calls waiting for a reply fail now rather than at their deadline: the reply is lost."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    RpcConnectionLost(
                        "the broker connection closed before the reply came; the request may still have been handled"
                    )
                )

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is None or future.done():
            return
        try:
            future.set_result(CloudEvent.from_json_bytes(message.body))
        except ContractError as exc:
            future.set_exception(exc)

    async def call(
        self, event: CloudEvent, *, routing_key: str, timeout: float, exchange: str = COMMANDS
    ) -> CloudEvent:
        """Publish ``event`` and wait up to ``timeout`` seconds for its reply."""
        if self._publisher is None:
            raise RuntimeError("RpcClient.start() first")
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[CloudEvent] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self._publisher.publish(
                event,
                exchange=exchange,
                routing_key=routing_key,
                reply_to=REPLY_TO,
                correlation_id=correlation_id,
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise RpcTimeout(f"no reply to {event.type} within {timeout:g}s") from exc
        finally:
            self._pending.pop(correlation_id, None)
