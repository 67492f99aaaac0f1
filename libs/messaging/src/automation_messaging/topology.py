"""The RabbitMQ topology of ARCHITECTURE.md, declared idempotently by every service at start.

Every service declares all exchanges and all shared work queues (not only the ones it consumes), so a
message published before its consumer first starts is queued, never dropped for want of a queue.
Work queues are quorum queues by default (``AUTOMATION_AMQP_QUEUE_TYPE``) with a delivery limit, and
dead-letter into ``automation.dlx``; ``automation.dead`` keeps every dead letter for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue, ExchangeType

from automation_core.logging import get_logger

EVENTS = "automation.events"
COMMANDS = "automation.commands"
CONTROL = "automation.control"
RETRY = "automation.retry"
DLX = "automation.dlx"
DEAD_QUEUE = "automation.dead"
EXECUTOR_RUNS = "executor.runs"
EXECUTOR_CANCELLATIONS = "executor.cancellations"
"""A durable copy of every ``automation.control`` broadcast, taken by one executor replica each: a
cancellation is remembered even when no replica was connected when it was sent."""
REPLICA_CONTROL_PREFIX = "executor.control."
"""Each executor replica's own queue on ``automation.control``: ``executor.control.<worker id>``."""
REPLICA_REPLIES_PREFIX = "executor.replies."
"""Each executor replica's own queue of the replies (``browser.result``) to its requests:
``executor.replies.<worker id>``."""
REPLICA_QUEUE_EXPIRES_MS = 15 * 60 * 1000
"""How long a replica's own queue outlives the replica (RabbitMQ's ``x-expires``)."""
BROWSER_TASKS = "browser-pool.tasks"
RUN_REQUESTED = "run.requested"
BROWSER_TASK = "browser.task"
MANDATORY_EXCHANGES = frozenset({COMMANDS, RETRY})
"""Exchanges published to mandatory: a command or a delayed retry that no queue takes is an error for
the publisher (its outbox tries it again), not a silent loss."""

log = get_logger(__name__)

EXCHANGES: dict[str, ExchangeType] = {
    EVENTS: ExchangeType.TOPIC,
    COMMANDS: ExchangeType.TOPIC,
    CONTROL: ExchangeType.FANOUT,
    RETRY: ExchangeType.DIRECT,
    DLX: ExchangeType.TOPIC,
}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable work queue and its bindings (exchange, routing key)."""

    name: str
    bindings: tuple[tuple[str, str], ...]
    max_priority: int | None = None
    extra_arguments: dict[str, Any] = field(default_factory=dict)


MAX_PRIORITY = 9
"""Highest job priority; ``executor.runs`` honours 0-9 when it is a classic queue (quorum queues ignore it)."""

WORK_QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(EXECUTOR_RUNS, ((COMMANDS, RUN_REQUESTED),), max_priority=MAX_PRIORITY),
    QueueSpec(BROWSER_TASKS, ((COMMANDS, BROWSER_TASK),)),
    QueueSpec(EXECUTOR_CANCELLATIONS, ((CONTROL, ""),)),
)


def work_queue_arguments(queue_type: str, delivery_limit: int, spec: QueueSpec | None = None) -> dict[str, Any]:
    """Arguments of a durable work queue: dead-lettering into ``automation.dlx``, quorum with delivery limit."""
    args: dict[str, Any] = {"x-dead-letter-exchange": DLX, "x-queue-type": queue_type}
    if queue_type == "quorum":
        args["x-delivery-limit"] = delivery_limit
    if spec is not None:
        if spec.max_priority is not None and queue_type == "classic":
            args["x-max-priority"] = spec.max_priority
        args.update(spec.extra_arguments)
    return args


async def declare_topology(channel: AbstractChannel, *, queue_type: str = "quorum", delivery_limit: int = 5) -> None:
    """Declare the exchanges, the dead-letter queue and the shared work queues (idempotent)."""
    for name, kind in EXCHANGES.items():
        await channel.declare_exchange(name, kind, durable=True)
    dead = await channel.declare_queue(DEAD_QUEUE, durable=True, arguments={"x-queue-type": queue_type})
    await dead.bind(DLX, routing_key="#")
    for spec in WORK_QUEUES:
        await declare_work_queue(channel, spec, queue_type=queue_type, delivery_limit=delivery_limit)


async def declare_work_queue(
    channel: AbstractChannel, spec: QueueSpec, *, queue_type: str = "quorum", delivery_limit: int = 5
) -> AbstractQueue:
    """Declare one durable work queue with dead-lettering and bind it."""
    queue = await channel.declare_queue(
        spec.name, durable=True, arguments=work_queue_arguments(queue_type, delivery_limit, spec)
    )
    for exchange, routing_key in spec.bindings:
        await queue.bind(exchange, routing_key=routing_key)
    return queue


QUORUM_DELAY_ARGUMENTS = ("x-queue-type", "x-dead-letter-strategy", "x-overflow")
"""What a quorum delay queue's arguments add to a classic one's (those of versions before 2026-12)."""


def delay_queue_arguments(delay_ms: int, target_exchange: str, target_key: str, queue_type: str) -> dict[str, Any]:
    """Arguments of a delay queue. A quorum one dead-letters **at least once**: an expired message
    stays in it until the target queue has confirmed its copy, so a broker restart cannot lose it
    (a classic queue's dead-lettering is fire-and-forget; it lost 21 of 5,000 expiring messages when
    RabbitMQ's app was stopped among them, where a quorum one lost none)."""
    args: dict[str, Any] = {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": target_exchange,
        "x-dead-letter-routing-key": target_key,
    }
    if queue_type == "quorum":
        args |= {"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    return args


async def declare_delay_queue(
    connection: AbstractConnection,
    *,
    delay_ms: int,
    target_exchange: str,
    target_key: str,
    queue_type: str = "quorum",
) -> str:
    """A TTL queue on ``automation.retry`` that dead-letters back to ``target_exchange``/``target_key``.

    Returns the routing key to publish to on ``automation.retry``. One queue per delay step keeps
    expiry in arrival order. With ``queue_type`` quorum (the default) it is a quorum queue that
    dead-letters at least once (:func:`delay_queue_arguments`).

    A classic delay queue of the same name, from a version before 2026-12, cannot be changed in place.
    When it is empty it is deleted (only if still empty) and declared again as a quorum queue; a
    message published to it meanwhile is returned (``automation.retry`` is published mandatory) and
    tried again by its outbox. When it still holds messages it is kept as it is, with a warning, and
    the next start tries again. Each step runs on a channel of its own, since a refused declaration
    closes its channel.
    """
    name = f"{RETRY}.{target_key}.{delay_ms}ms"
    args = delay_queue_arguments(delay_ms, target_exchange, target_key, queue_type)
    if await _declare_bound(connection, name, args, refusal_raises=queue_type != "quorum"):
        return name
    classic = {k: v for k, v in args.items() if k not in QUORUM_DELAY_ARGUMENTS}
    async with connection.channel() as channel:
        try:
            await channel.queue_delete(name, if_empty=True)
            log.info("delay_queue_made_quorum", queue=name)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            log.warning(
                "delay_queue_kept_classic",
                queue=name,
                problem="a classic delay queue from an earlier version still holds messages; it dead-letters "
                "at most once until it is empty and the service starts again",
            )
            args = classic
    await _declare_bound(connection, name, args, refusal_raises=True)
    return name


async def _declare_bound(
    connection: AbstractConnection, name: str, args: dict[str, Any], *, refusal_raises: bool
) -> bool:
    """Declare ``name`` with ``args`` and bind it to ``automation.retry``, on a channel of its own; False
    when the broker refused the arguments (the queue exists with others) and ``refusal_raises`` is off."""
    async with connection.channel() as channel:
        try:
            queue = await channel.declare_queue(name, durable=True, arguments=args)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            if refusal_raises:
                raise
            return False
        await queue.bind(RETRY, routing_key=name)
    return True


async def declare_service_queue(
    channel: AbstractChannel,
    name: str,
    bindings: list[tuple[str, str]],
    *,
    queue_type: str = "quorum",
    delivery_limit: int = 5,
) -> AbstractQueue:
    """A service's own durable queue (e.g. ``scheduler.job-events``) bound to the given keys."""
    return await declare_work_queue(
        channel, QueueSpec(name, tuple(bindings)), queue_type=queue_type, delivery_limit=delivery_limit
    )


async def declare_replica_queue(
    channel: AbstractChannel, name: str, bindings: list[tuple[str, str]], *, expires_ms: int = REPLICA_QUEUE_EXPIRES_MS
) -> AbstractQueue:
    """One replica's own durable queue (e.g. ``executor.control.<worker id>`` for ``automation.control``
    broadcasts). Unlike an exclusive queue it outlives its connection: what is broadcast while the
    replica reconnects, or while RabbitMQ restarts, waits for it. RabbitMQ deletes it ``expires_ms``
    after its replica stopped consuming it."""
    queue = await channel.declare_queue(name, durable=True, arguments={"x-expires": expires_ms})
    for exchange, routing_key in bindings:
        await queue.bind(exchange, routing_key=routing_key)
    return queue


def persistent(body: bytes, **kwargs: object) -> aio_pika.Message:
    """A persistent message."""
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **kwargs)  # type: ignore[arg-type]
