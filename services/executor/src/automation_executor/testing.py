"""Test support: build run requests, run the executor app in-process, watch what it publishes.

Used by the executor's integration tests and usable by anyone testing against an executor:
:func:`run_request_data` builds a valid ``run.requested`` payload, :class:`ExecutorHarness` runs the app
(lifespan included) against a real database and broker, publishes requests to ``automation.commands``
and cancellations to ``automation.control``, and records every ``execution.*`` event from
``automation.events``; :func:`serve_environment` (with :func:`free_port`) is the environment to run one
as a separate process, ``python -m automation_executor serve``, and :func:`start_replica` starts it.
:func:`command_server_by_way` makes a command server that gives commands their limits one of the ways
it can (:data:`COMMAND_WAYS`), for tests and the commands benchmark.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import IO, Any

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from fastapi import FastAPI

from automation_contracts import CloudEvent, build_event
from automation_executor.app import create_app, fork_server_environment
from automation_executor.forkserver.client import ForkServer
from automation_executor.settings import ExecutorSettings
from automation_messaging.topology import COMMANDS, CONTROL, DEAD_QUEUE, EVENTS, RUN_REQUESTED

COMMAND_WAYS = ("held", "prlimit", "fork")
"""How a command server can give a command its limits: ``held``, the server holds those it can live under
itself and the command inherits them (what the service does; ``prlimit`` sets the rest); ``prlimit``, the
server holds none and starts every command under util-linux's ``prlimit``; ``fork``, a fork of the server
sets them before its ``exec``."""


def command_server_by_way(way: str, rlimits: Sequence[tuple[str, int, int]] = ()) -> ForkServer:
    """A command server (not started yet) that gives its commands their limits ``way`` (:data:`COMMAND_WAYS`),
    holding ``rlimits`` when ``held``."""
    if way not in COMMAND_WAYS:
        raise ValueError(f"unknown way {way!r}: one of {', '.join(COMMAND_WAYS)}")
    return ForkServer(
        env=fork_server_environment(),
        child=False,
        fork_commands=way == "fork",
        hold_limits=rlimits if way == "held" else (),
    )


TERMINAL_TYPES = frozenset({"execution.succeeded", "execution.failed", "execution.timed_out", "execution.cancelled"})


TEST_ADMIN_TOKEN = "t" * 32
"""The admin token of :func:`harness_settings`."""


async def broadcast_cancel(channel: AbstractChannel, execution_id: str | uuid.UUID, reason: str) -> CloudEvent:
    """Broadcast ``execution.cancel`` on ``automation.control`` through ``channel``, as job-api does."""
    data = {"execution_id": str(execution_id), "reason": reason, "requested_at": datetime.now(UTC).isoformat()}
    event = build_event("execution.cancel", source="/tests/executor", data=data, subject=str(execution_id))
    exchange = await channel.get_exchange(CONTROL)
    message = aio_pika.Message(
        event.to_json_bytes(),
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.id,
    )
    await exchange.publish(message, routing_key="execution.cancel")
    return event


def harness_settings(database_url: str, amqp_url: str, **overrides: Any) -> ExecutorSettings:
    """Settings of a replica under test: development mode and test credentials, then ``overrides``."""
    return ExecutorSettings(
        database_url=database_url,
        amqp_url=amqp_url,
        env="development",
        jwt_secret="x" * 32,
        admin_token=TEST_ADMIN_TOKEN,
        **overrides,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a replica's HTTP server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_environment(database_url: str, amqp_url: str, *, port: int, **settings: str) -> dict[str, str]:
    """The environment of ``python -m automation_executor serve`` as a separate process under test: this
    process's environment, the broker and database, development mode, test credentials
    (:data:`TEST_ADMIN_TOKEN`), HTTP on 127.0.0.1:``port``, then ``settings`` (``AUTOMATION_*`` names)."""
    return {
        **os.environ,
        "AUTOMATION_DATABASE_URL": database_url,
        "AUTOMATION_AMQP_URL": amqp_url,
        "AUTOMATION_ENV": "development",
        "AUTOMATION_JWT_SECRET": "x" * 32,
        "AUTOMATION_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "AUTOMATION_HTTP_HOST": "127.0.0.1",
        "AUTOMATION_HTTP_PORT": str(port),
        **settings,
    }


async def start_replica(
    env: Mapping[str, str], port: int, *, output: IO[bytes] | None = None, timeout: float = 60.0
) -> subprocess.Popen[bytes]:
    """``python -m automation_executor serve`` in ``env`` (see :func:`serve_environment`), once it answers
    ``/readyz`` on 127.0.0.1:``port`` with 200; stdout and stderr to ``output`` (default: this process's).

    Raises ``AssertionError`` if it exits first and ``TimeoutError`` after ``timeout`` seconds; either way
    it is killed and reaped before the error is raised.
    """
    process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived server; only its start is awaited
        [sys.executable, "-m", "automation_executor", "serve"],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )
    try:
        await _until_ready(process, port, timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        raise
    return process


async def _until_ready(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=1) as client:
        while process.poll() is None:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica was not ready on port {port} after {timeout:g} s")
            await asyncio.sleep(0.1)
    raise AssertionError(f"the replica exited with {process.returncode} before it was ready")


def run_request_data(
    steps: Sequence[Mapping[str, Any]],
    *,
    execution_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    attempt: int = 1,
    parameters: Mapping[str, Any] | None = None,
    timeout_seconds: int = 30,
    retries: int = 0,
    base_seconds: float = 0.01,
    max_seconds: float = 0.01,
    trigger: str = "manual",
    scheduled_for: datetime | None = None,
    priority: int = 5,
    max_concurrency: int | None = None,
    limits: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """A valid ``run.requested`` payload for a run (manual unless told) of a job with ``steps``."""
    job: dict[str, Any] = {
        "name": "test-job",
        "enabled": True,
        "timeout_seconds": timeout_seconds,
        "retries": retries,
        "retry_backoff": {"base_seconds": base_seconds, "max_seconds": max_seconds},
        "priority": priority,
        "parameters": {"type": "object"},
        "steps": [dict(step) for step in steps],
    }
    if max_concurrency is not None:
        job["max_concurrency"] = max_concurrency
    if limits is not None:
        job["limits"] = dict(limits)
    return {
        "execution_id": str(execution_id or uuid.uuid4()),
        "job_id": str(job_id or uuid.uuid4()),
        "account_id": str(account_id or uuid.uuid4()),
        "job_version": 1,
        "trigger": trigger,
        "scheduled_for": scheduled_for.isoformat() if scheduled_for is not None else None,
        "requested_at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
        "parameters": dict(parameters or {}),
        "job": job,
    }


class ExecutorHarness:
    """The executor app running in-process, plus a broker connection that publishes and listens."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.events: list[CloudEvent] = []
        self.app: FastAPI | None = None
        self.client: httpx.AsyncClient | None = None
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._tap: AbstractQueue | None = None

    @property
    def admin_headers(self) -> dict[str, str]:
        token = self.settings.admin_token
        assert token is not None
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    async def start(self) -> None:
        """Start the app (migrations, topology, consumer) and, once, the event tap."""
        app = create_app(self.settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        self.app, self._lifespan = app, lifespan
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        if self._connection is None:
            # Robust, so the tap comes back (queue, binding, consumer) when a test drops the connections.
            self._connection = await aio_pika.connect_robust(
                self.settings.amqp_url.get_secret_value(), reconnect_interval=0.5
            )
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._tap = await self._channel.declare_queue(exclusive=True, auto_delete=True)
            await self._tap.bind(EVENTS, routing_key="execution.*")
            await self._tap.consume(self._on_event, no_ack=True)

    async def stop(self) -> None:
        """Shut the app down through its lifespan (the event tap keeps listening)."""
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self._lifespan is not None:
            lifespan, self._lifespan = self._lifespan, None
            await lifespan.__aexit__(None, None, None)

    async def close(self) -> None:
        """Stop the app and the broker connection."""
        await self.stop()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def __aenter__(self) -> ExecutorHarness:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        self.events.append(CloudEvent.from_json_bytes(message.body))

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "start() first"
        return self._channel

    async def request_run(self, data: Mapping[str, Any]) -> CloudEvent:
        """Publish ``run.requested`` with ``data`` to ``automation.commands``."""
        event = build_event(RUN_REQUESTED, source="/tests/executor", data=data)
        await self.publish_body(event.to_json_bytes())
        return event

    async def publish_body(self, body: bytes, *, content_type: str = "application/cloudevents+json") -> None:
        """Publish any body to ``automation.commands`` with routing key ``run.requested``."""
        exchange = await self.channel.get_exchange(COMMANDS)
        message = aio_pika.Message(body, content_type=content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, routing_key=RUN_REQUESTED, mandatory=True)

    async def cancel(self, execution_id: str | uuid.UUID, reason: str = "cancelled by a test") -> CloudEvent:
        """Broadcast ``execution.cancel`` on ``automation.control`` (as job-api does)."""
        return await broadcast_cancel(self.channel, execution_id, reason)

    async def attempts(self, execution_id: str | uuid.UUID) -> list[dict[str, Any]]:
        """The execution's attempts as ``GET /api/v1/attempts`` returns them (admin)."""
        assert self.client is not None, "start() first"
        response = await self.client.get(
            "/api/v1/attempts", params={"execution_id": str(execution_id)}, headers=self.admin_headers
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def of(self, execution_id: str | uuid.UUID, event_type: str | None = None) -> list[CloudEvent]:
        """Events recorded for one execution (optionally of one type), in arrival order."""
        return [
            e
            for e in self.events
            if isinstance(e.data, dict)
            and e.data.get("execution_id") == str(execution_id)
            and (event_type is None or e.type == event_type)
        ]

    async def wait_for(
        self, execution_id: str | uuid.UUID, event_type: str, *, count: int = 1, timeout: float = 15.0
    ) -> list[CloudEvent]:
        """Wait until ``count`` events of ``event_type`` were seen for the execution."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = self.of(execution_id, event_type)
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                seen = [e.type for e in self.of(execution_id)]
                raise AssertionError(f"no {count} x {event_type} for {execution_id} within {timeout}s; seen {seen}")
            await asyncio.sleep(0.02)

    async def wait_outcome(
        self, execution_id: str | uuid.UUID, *, attempt: int = 1, timeout: float = 15.0
    ) -> CloudEvent:
        """The terminal event of one attempt."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event in self.of(execution_id):
                if event.type in TERMINAL_TYPES and isinstance(event.data, dict) and event.data["attempt"] == attempt:
                    return event
            if asyncio.get_running_loop().time() > deadline:
                seen = [e.type for e in self.of(execution_id)]
                raise AssertionError(f"attempt {attempt} of {execution_id} did not end within {timeout}s; seen {seen}")
            await asyncio.sleep(0.02)

    def log_entries(self, execution_id: str | uuid.UUID, *, attempt: int | None = None) -> list[dict[str, Any]]:
        """Every log entry published for the execution, by attempt and batch order."""
        batches = [
            e.data
            for e in self.of(execution_id, "execution.log")
            if isinstance(e.data, dict) and (attempt is None or e.data["attempt"] == attempt)
        ]
        batches.sort(key=lambda d: (d["attempt"], d["seq"]))
        return [entry for batch in batches for entry in batch["entries"]]

    def log_text(self, execution_id: str | uuid.UUID, *, attempt: int | None = None) -> str:
        """The log as text, one entry a line."""
        return "\n".join(entry["text"] for entry in self.log_entries(execution_id, attempt=attempt))

    def logged(
        self, execution_id: str | uuid.UUID, text: str, *, attempt: int | None = None
    ) -> Callable[[], Awaitable[bool]]:
        """A probe for ``wait_until``: whether ``text`` is in the log (of ``attempt``) yet."""

        async def probe() -> bool:
            return text in self.log_text(execution_id, attempt=attempt)

        return probe

    async def dead_letters(self) -> list[AbstractIncomingMessage]:
        """Take every message now waiting in ``automation.dead`` (acknowledged)."""
        queue = await self.channel.get_queue(DEAD_QUEUE, ensure=False)
        taken: list[AbstractIncomingMessage] = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
        return taken
