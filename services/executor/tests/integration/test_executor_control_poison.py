"""A run request that keeps killing its consumer is dead-lettered by ``executor.runs``'s quorum delivery limit.

Each "executor" here takes the request and dies (its connection closes with the message unacknowledged),
as a replica killed by what it runs would, before it could record anything. RabbitMQ counts the
deliveries and, past ``AUTOMATION_AMQP_DELIVERY_LIMIT``, moves the message to ``automation.dead``.
"""

from __future__ import annotations

import json

import aio_pika
import pytest

from automation_contracts import build_event
from automation_executor.testing import run_request_data
from automation_messaging.topology import (
    COMMANDS,
    DEAD_QUEUE,
    EXECUTOR_RUNS,
    RUN_REQUESTED,
    WORK_QUEUES,
    declare_topology,
    work_queue_arguments,
)
from automation_testing import wait_until

pytestmark = pytest.mark.integration
DELIVERY_LIMIT = 2


async def test_a_request_that_kills_every_executor_is_dead_lettered_after_the_delivery_limit(amqp_url: str) -> None:
    spec = next(s for s in WORK_QUEUES if s.name == EXECUTOR_RUNS)
    assert work_queue_arguments("quorum", DELIVERY_LIMIT, spec)["x-delivery-limit"] == DELIVERY_LIMIT
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, queue_type="quorum", delivery_limit=DELIVERY_LIMIT)
        data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}])
        event = build_event(RUN_REQUESTED, source="/tests", data=json.loads(json.dumps(data)))
        exchange = await channel.get_exchange(COMMANDS)
        await exchange.publish(
            aio_pika.Message(
                event.to_json_bytes(), message_id=event.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=RUN_REQUESTED,
            mandatory=True,
        )
        counts: list[int] = []
        for _ in range(DELIVERY_LIMIT + 1):
            executor = await aio_pika.connect(amqp_url)
            runs = await (await executor.channel()).get_queue(EXECUTOR_RUNS, ensure=False)

            async def delivered(
                queue: aio_pika.abc.AbstractQueue = runs,
            ) -> aio_pika.abc.AbstractIncomingMessage | None:
                return await queue.get(no_ack=False, fail=False)

            message = await wait_until(delivered, what="the request to be delivered")
            assert message.message_id == event.id
            count = (message.headers or {}).get("x-delivery-count", 0)
            assert isinstance(count, int)
            counts.append(count)
            await executor.close()  # the executor dies holding the message
        assert counts == [0, 1, 2]
        dead = await channel.get_queue(DEAD_QUEUE, ensure=False)

        async def dead_lettered() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await dead.get(no_ack=True, fail=False)

        letter = await wait_until(dead_lettered, what="the request in automation.dead")
        assert letter.message_id == event.id
        deaths = (letter.headers or {})["x-death"]
        assert isinstance(deaths, list)
        [death] = deaths
        assert isinstance(death, dict)
        assert death["reason"] == "delivery_limit"
        assert death["queue"] == EXECUTOR_RUNS
        queue = await channel.declare_queue(EXECUTOR_RUNS, passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()
