"""The retry delay queues: one TTL queue on ``automation.retry`` per step of the backoff ladder."""

from __future__ import annotations

from aio_pika.abc import AbstractConnection

from automation_executor.domain.backoff import LADDER_SECONDS
from automation_messaging.topology import COMMANDS, RUN_REQUESTED, declare_delay_queue

RetryRoutes = dict[int, str]
"""Delay in seconds → routing key on ``automation.retry``."""


async def declare_retry_ladder(connection: AbstractConnection, *, queue_type: str = "quorum") -> RetryRoutes:
    """Declare every delay queue (idempotent); each dead-letters to ``automation.commands``/``run.requested``
    (at least once when ``queue_type`` is quorum)."""
    routes: RetryRoutes = {}
    for seconds in LADDER_SECONDS:
        routes[seconds] = await declare_delay_queue(
            connection,
            delay_ms=seconds * 1000,
            target_exchange=COMMANDS,
            target_key=RUN_REQUESTED,
            queue_type=queue_type,
        )
    return routes
