"""Test support shipped with the service: job event builders and an AMQP probe.

Used by the scheduler's integration tests and usable by end-to-end tests: :class:`Jobs` builds valid
``job.created|updated|deleted`` events (any JobSpec field can be set); :class:`Bus` publishes them (and
execution events, and any external event) to ``automation.events``, captures every ``run.requested`` on
``automation.commands`` and every ``execution.cancel`` on ``automation.control`` through its own
exclusive queues; :class:`Tables` reads the scheduler's tables and travels in time (moves a schedule's
next fire time into the past and wakes the fire loops).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection, ExchangeType
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_contracts import CancelExecution, CloudEvent, RunRequested, build_event, parse_data
from automation_messaging import CLOUDEVENTS_JSON
from automation_messaging.topology import COMMANDS, CONTROL, DEAD_QUEUE, EVENTS, RUN_REQUESTED
from automation_scheduler.db.repository import WAKE_CHANNEL
from automation_scheduler.db.tables import event_fires, fires, running, schedules, trigger_bindings

WORKER = "test-worker"


def job_spec(
    schedule: str | None = "@every 1s", *, enabled: bool = True, timezone: str = "UTC", **extra: Any
) -> dict[str, Any]:
    """A valid JobSpec document; ``extra`` sets further fields (``misfire_policy="skip"``, ``triggers=[...]``)."""
    base: dict[str, Any] = {
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
    return base | extra


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
        **extra: Any,
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
                "job": job_spec(schedule, enabled=enabled, timezone=timezone, **extra),
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
        self.cancels: list[CancelExecution] = []

    async def open(self) -> None:
        self._conn = await aio_pika.connect_robust(self._url)
        self._channel = await self._conn.channel(publisher_confirms=True)
        for name in (EVENTS, COMMANDS):
            await self._channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
        await self._channel.declare_exchange(CONTROL, ExchangeType.FANOUT, durable=True)
        capture = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await capture.bind(COMMANDS, routing_key=RUN_REQUESTED)
        await capture.consume(self._on_run, no_ack=True)
        control = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await control.bind(CONTROL, routing_key="")
        await control.consume(self._on_control, no_ack=True)

    async def _on_run(self, message: AbstractIncomingMessage) -> None:
        event = CloudEvent.from_json_bytes(message.body)
        self.runs.append((parse_data(event, RunRequested), message))

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        event = CloudEvent.from_json_bytes(message.body)
        if event.type == "execution.cancel":
            self.cancels.append(parse_data(event, CancelExecution))

    def runs_of(self, job_id: uuid.UUID) -> list[RunRequested]:
        return [run for run, _ in self.runs if run.job_id == job_id]

    async def execution_event(self, event_type: str, run: RunRequested, **data: Any) -> None:
        """Publish an execution event about ``run`` as the executor would (``data`` adds or overrides fields).

        ``execution.started`` carries the run's trigger and times; the terminal types default to attempt
        1, now, and for ``failed``/``timed_out`` ``will_retry`` false with an error text.
        """
        now = datetime.now(UTC).isoformat()
        body: dict[str, Any] = {
            "execution_id": str(run.execution_id),
            "job_id": str(run.job_id),
            "account_id": str(run.account_id),
            "attempt": 1,
        }
        if event_type == "execution.started":
            body |= {"started_at": now, "worker": WORKER, "trigger": run.trigger}
            if run.backfill_id is not None:
                body["backfill_id"] = str(run.backfill_id)
        elif event_type == "execution.succeeded":
            body |= {"started_at": now, "finished_at": now}
        elif event_type in ("execution.failed", "execution.timed_out"):
            body |= {"finished_at": now, "error": "test failure", "will_retry": False}
        elif event_type == "execution.cancelled":
            body |= {"finished_at": now, "reason": "test"}
        body |= data
        await self.publish(
            build_event(event_type, source="/automation/executor", subject=str(run.execution_id), data=body)
        )

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


class Tables:
    """Reads and time travel on the scheduler's tables, for tests that must not wait for the clock."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def schedule(self, job_id: uuid.UUID) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(select(schedules).where(schedules.c.job_id == job_id))).one_or_none()

    async def fires(self, job_id: uuid.UUID) -> list[Any]:
        """A job's slot records, oldest first."""
        async with self._engine.connect() as conn:
            stmt = select(fires).where(fires.c.job_id == job_id).order_by(fires.c.nominal_time, fires.c.trigger)
            return list((await conn.execute(stmt)).all())

    async def event_fires(self, job_id: uuid.UUID) -> list[Any]:
        async with self._engine.connect() as conn:
            stmt = select(event_fires).where(event_fires.c.job_id == job_id).order_by(event_fires.c.recorded_at)
            return list((await conn.execute(stmt)).all())

    async def running(self, job_id: uuid.UUID) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(select(running).where(running.c.job_id == job_id))).all())

    async def bound_patterns(self) -> set[str]:
        async with self._engine.connect() as conn:
            return set((await conn.execute(select(trigger_bindings.c.pattern))).scalars())

    async def travel(self, job_id: uuid.UUID, **values: Any) -> None:
        """Overwrite schedule columns (``next_fire_at`` in the past: slots fall due at once) and wake
        every fire loop, as another replica's change would."""
        async with self._engine.begin() as conn:
            await conn.execute(schedules.update().where(schedules.c.job_id == job_id).values(**values))
            await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})
