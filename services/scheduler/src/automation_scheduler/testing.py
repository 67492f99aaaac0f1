"""Test support shipped with the service: job event builders and an AMQP probe.

Used by the scheduler's integration tests and usable by end-to-end tests: :class:`Jobs` builds valid
``job.created|updated|deleted`` events; :class:`Bus` publishes them to ``automation.events`` and captures
every ``run.requested`` on ``automation.commands`` through its own exclusive queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection, ExchangeType

from automation_contracts import CloudEvent, RunRequested, build_event, parse_data
from automation_messaging import CLOUDEVENTS_JSON
from automation_messaging.topology import COMMANDS, DEAD_QUEUE, EVENTS, RUN_REQUESTED


def job_spec(schedule: str | None = "@every 1s", *, enabled: bool = True, timezone: str = "UTC") -> dict[str, Any]:
    """A valid JobSpec document."""
    return {
        "name": f"job-{uuid.uuid4().hex[:8]}",
        "schedule": schedule,
        "timezone": timezone,
        "enabled": enabled,
        "timeout_seconds": 60,
        "retries": 0,
        "retry_backoff": {"base_seconds": 1, "max_seconds": 10},
        "priority": 5,
        "parameters": {"type": "object", "properties": {"site": {"type": "string", "default": "fra1"}}},
        "steps": [{"name": "echo", "type": "shell", "config": {"command": ["echo", "hi"]}}],
    }


@dataclass
class Jobs:
    """Builds ``job.*`` events of one account (version 1 is ``job.created``, later ones ``job.updated``)."""

    account_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def changed(
        self,
        job_id: uuid.UUID,
        *,
        version: int = 1,
        schedule: str | None = "@every 1s",
        enabled: bool = True,
        timezone: str = "UTC",
        changed_at: datetime | None = None,
    ) -> CloudEvent:
        return build_event(
            "job.created" if version == 1 else "job.updated",
            source="/automation/job-api",
            subject=str(job_id),
            data={
                "job_id": str(job_id),
                "account_id": str(self.account_id),
                "version": version,
                "changed_at": (changed_at or datetime.now(UTC)).isoformat(),
                "job": job_spec(schedule, enabled=enabled, timezone=timezone),
            },
        )

    def deleted(self, job_id: uuid.UUID, *, version: int) -> CloudEvent:
        return build_event(
            "job.deleted",
            source="/automation/job-api",
            subject=str(job_id),
            data={
                "job_id": str(job_id),
                "account_id": str(self.account_id),
                "version": version,
                "deleted_at": datetime.now(UTC).isoformat(),
            },
        )


class Bus:
    """A test's own AMQP client: publishes job events, captures every ``run.requested``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self.runs: list[tuple[RunRequested, AbstractIncomingMessage]] = []

    async def open(self) -> None:
        self._conn = await aio_pika.connect_robust(self._url)
        self._channel = await self._conn.channel(publisher_confirms=True)
        for name in (EVENTS, COMMANDS):
            await self._channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
        capture = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await capture.bind(COMMANDS, routing_key=RUN_REQUESTED)
        await capture.consume(self._on_run, no_ack=True)

    async def _on_run(self, message: AbstractIncomingMessage) -> None:
        event = CloudEvent.from_json_bytes(message.body)
        self.runs.append((parse_data(event, RunRequested), message))

    def runs_of(self, job_id: uuid.UUID) -> list[RunRequested]:
        return [run for run, _ in self.runs if run.job_id == job_id]

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None
        return self._channel

    async def publish(self, event: CloudEvent | bytes, routing_key: str | None = None) -> None:
        body = event if isinstance(event, bytes) else event.to_json_bytes()
        key = routing_key or (event.type if isinstance(event, CloudEvent) else "job.created")
        exchange = await self.channel.get_exchange(EVENTS, ensure=False)
        await exchange.publish(
            aio_pika.Message(body, content_type=CLOUDEVENTS_JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=key,
        )

    async def dead_letters(self) -> list[AbstractIncomingMessage]:
        """Take every message now in ``automation.dead``."""
        queue = await self.channel.get_queue(DEAD_QUEUE, ensure=False)
        taken: list[AbstractIncomingMessage] = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
