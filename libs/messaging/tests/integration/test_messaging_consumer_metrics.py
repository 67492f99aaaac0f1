"""The consumer runner's queue RED metrics against the real broker: every delivery is received once and
ends in exactly one outcome (acked, requeued, dead_lettered); the series exist from the start."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from prometheus_client import REGISTRY

from automation_contracts import CloudEvent, build_event
from automation_core.metrics import CONSUMED_OUTCOMES
from automation_core.settings import ServiceSettings
from automation_messaging import Broker, Delivery, RetryLater
from automation_messaging.consumer import Consumer, queue_label
from automation_messaging.topology import EVENTS, declare_service_queue
from automation_testing import wait_until

pytestmark = pytest.mark.integration
SERVICE = "msgmetrics"


@pytest.fixture
async def broker(amqp_url: str, database_url: str) -> AsyncIterator[Broker]:
    settings = ServiceSettings(
        service_name=SERVICE,
        env="development",
        amqp_url=amqp_url,
        database_url=database_url,
        amqp_delivery_limit=3,
    )
    b = Broker(settings)
    await b.connect()
    yield b
    await b.close()


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": SERVICE, **labels})


def job_deleted(version: int = 2) -> CloudEvent:
    data = {
        "job_id": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "version": version,
        "deleted_at": datetime.now(UTC).isoformat(),
    }
    return build_event("job.deleted", source="/tests/messaging-metrics", data=data)


def test_server_named_queues_share_one_label() -> None:
    assert queue_label("amq.gen-JzTY20BRgKO-HjmUJj0wLg") == "server-named"
    assert queue_label("executor.runs") == "executor.runs"


async def test_every_delivery_is_received_once_and_ends_in_one_outcome(broker: Broker) -> None:
    queue = f"msgmetrics.{uuid.uuid4().hex[:8]}"
    retried: set[str] = set()
    done: list[str] = []

    async def handler(event: CloudEvent, _delivery: Delivery) -> None:
        if event.id not in retried:
            retried.add(event.id)
            raise RetryLater("not yet", delay=0.01)
        done.append(event.id)

    async def declare(channel: AbstractChannel) -> AbstractQueue:
        return await declare_service_queue(channel, queue, [(EVENTS, "job.deleted")], queue_type="quorum")

    consumer = Consumer(broker, queue=declare, handler=handler)
    await consumer.start()
    try:
        assert value("automation_messages_received_total", queue=queue) == 0
        for outcome in CONSUMED_OUTCOMES:
            assert value("automation_messages_consumed_total", queue=queue, outcome=outcome) == 0
        valid = job_deleted()
        await broker.publisher.publish(job_deleted(version=0), exchange=EVENTS)  # fails its schema
        await broker.publisher.publish(valid, exchange=EVENTS)

        async def all_ended() -> bool:
            return (
                done == [valid.id]
                and value("automation_messages_consumed_total", queue=queue, outcome="dead_lettered") == 1
            )

        await wait_until(all_ended, timeout=15, what="the valid message acked and the invalid one dead-lettered")
    finally:
        await consumer.stop()
    assert value("automation_messages_received_total", queue=queue) == 3  # invalid, valid, valid again
    assert value("automation_messages_consumed_total", queue=queue, outcome="requeued") == 1
    assert value("automation_messages_consumed_total", queue=queue, outcome="acked") == 1
    assert value("automation_message_handling_duration_seconds_count", queue=queue) == 3
