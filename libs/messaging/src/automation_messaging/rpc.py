"""Request/reply over RabbitMQ.

The caller publishes a command with ``reply_to`` and a correlation id and awaits the reply event; the
server side is an ordinary :class:`~automation_messaging.consumer.Consumer` whose handler returns the
reply. Replies come one of two ways:

- **Direct reply-to** (``amq.rabbitmq.reply-to``, no ``reply_queue``): no queue at all, but a reply can
  only reach the channel that sent the request. When that channel closes (the broker restarted, the
  connection dropped) the calls still waiting fail at once with :class:`RpcConnectionLost` instead of
  at their deadline.
- **A reply queue of the caller's own** (``reply_queue="executor.replies.<worker id>"``): a durable
  queue that outlives the connection (RabbitMQ deletes it ``x-expires`` after its caller stopped
  consuming it), read with acknowledgements. A call outlives a broker restart: the request waits in
  the server's queue, the server's reply waits in the caller's queue, and the call gets it once its
  connection is back. A request that could not be published because the connection was down is
  published again, until the call's deadline. The server must then answer a request it receives twice
  with one result (browser-pool does, by ``task_id``).
"""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from automation_contracts import CloudEvent, ContractError
from automation_core.errors import Outage
from automation_core.logging import get_logger
from automation_messaging.broker import CONNECTION_ERRORS, Broker, Publisher
from automation_messaging.topology import COMMANDS, declare_replica_queue

log = get_logger(__name__)
REPLY_TO = "amq.rabbitmq.reply-to"
REPUBLISH_FIRST_PAUSE_SECONDS = 0.2
REPUBLISH_MAX_PAUSE_SECONDS = 2.0


class RpcTimeout(TimeoutError):
    """No reply within the deadline."""


class RpcConnectionLost(ConnectionError):
    """The channel the reply was to come on closed first (the broker restarted, the connection
    dropped): a direct reply-to reply cannot follow the caller to a new channel."""


class RpcClient:
    """Sends commands and awaits their replies on a dedicated channel (see the module for the two ways)."""

    def __init__(self, broker: Broker, *, reply_queue: str | None = None) -> None:
        self._broker = broker
        self._reply_queue = reply_queue
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._pending: dict[str, asyncio.Future[CloudEvent]] = {}

    @property
    def reply_to(self) -> str:
        """Where the replies come: the caller's own queue, or direct reply-to."""
        return self._reply_queue or REPLY_TO

    async def start(self) -> None:
        self._channel = await self._broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        if self._reply_queue is None:
            self._channel.close_callbacks.add(self._on_close)
            queue = await self._channel.get_queue(REPLY_TO, ensure=False)
            await queue.consume(self._on_reply, no_ack=True)
        else:
            # A robust channel declares it again, and consumes it again, when the connection is back.
            queue = await declare_replica_queue(self._channel, self._reply_queue, [])
            await queue.consume(self._on_queued_reply)
        self._publisher = Publisher(self._channel, self._broker.service)

    async def stop(self) -> None:
        for future in self._pending.values():
            future.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def _on_close(self, *_: object) -> None:
        """Calls waiting for a direct reply-to reply fail now rather than at their deadline: it is lost."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    RpcConnectionLost(
                        "the broker connection closed before the reply came; the request may still have been handled"
                    )
                )

    def _settle(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is None or future.done():
            log.info("rpc_reply_without_caller", correlation_id=message.correlation_id, message_id=message.message_id)
            return
        try:
            future.set_result(CloudEvent.from_json_bytes(message.body))
        except ContractError as exc:
            future.set_exception(exc)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self._settle(message)

    async def _on_queued_reply(self, message: AbstractIncomingMessage) -> None:
        """A reply from the caller's own queue: given to its call (or dropped when no call waits for it,
        e.g. a second reply to a request delivered twice), then acknowledged."""
        self._settle(message)
        try:
            await message.ack()
        except CONNECTION_ERRORS as exc:  # the broker requeued it; the redelivery finds no call and is dropped
            log.info("rpc_reply_ack_lost", error=repr(exc))

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
            async with asyncio.timeout(timeout):
                await self._publish(event, exchange=exchange, routing_key=routing_key, correlation_id=correlation_id)
                return await future
        except TimeoutError as exc:
            raise RpcTimeout(f"no reply to {event.type} within {timeout:g}s") from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def _publish(self, event: CloudEvent, *, exchange: str, routing_key: str, correlation_id: str) -> None:
        """Publish the request; with a reply queue of its own, again after a pause while the connection
        is down (the caller's deadline bounds it)."""
        assert self._publisher is not None
        outage: Outage | None = None  # made at the first failure
        while True:
            try:
                await self._publisher.publish(
                    event,
                    exchange=exchange,
                    routing_key=routing_key,
                    reply_to=self.reply_to,
                    correlation_id=correlation_id,
                )
            except CONNECTION_ERRORS as exc:
                if self._reply_queue is None:
                    raise
                outage = outage or Outage(
                    started="rpc_request_publish_waits_for_broker",
                    ended="rpc_request_published_broker_back",
                    first=REPUBLISH_FIRST_PAUSE_SECONDS,
                    cap=REPUBLISH_MAX_PAUSE_SECONDS,
                )
                await asyncio.sleep(outage.pause(exc))
            else:
                if outage is not None:
                    outage.over()
                return
