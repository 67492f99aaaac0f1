"""A cancellation reaches the executor whatever its broker connection was doing when it was sent: a
replica's own control queue outlives its connection, and ``executor.cancellations`` keeps each one until
a replica has remembered it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from automation_executor.settings import ExecutorSettings
from automation_executor.testing import ExecutorHarness, broadcast_cancel, harness_settings, run_request_data
from automation_messaging.topology import EXECUTOR_CANCELLATIONS, REPLICA_CONTROL_PREFIX, declare_topology
from automation_testing import drop_broker_connections, wait_until

pytestmark = pytest.mark.integration

LONG_LEASE_SECONDS = 120.0
"""Its heartbeat (every 40 s) cannot be what finds the cancellations in these tests."""


def _settings(database_url: str, amqp_url: str) -> ExecutorSettings:
    return harness_settings(
        database_url, amqp_url, executor_lease_seconds=LONG_LEASE_SECONDS, executor_kill_grace_seconds=1
    )


def _sleeper(marker: Path) -> dict[str, Any]:
    script = f"touch {marker}; sleep 60"
    return {"name": "wait", "type": "shell", "config": {"command": ["sh", "-c", script]}}


async def test_a_cancellation_sent_while_the_executor_reconnects_stops_its_run(
    database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """RabbitMQ drops the executor's connection; job-api's cancellation goes out before the executor is
    back (it reconnects after 5 s). Its own queue kept the cancellation, so the run is stopped as soon
    as it reconnects, not at its next heartbeat 40 s on."""
    marker = tmp_path / "started"
    data = run_request_data([_sleeper(marker)], retries=2)
    execution_id = data["execution_id"]
    async with ExecutorHarness(_settings(database_url, amqp_url)) as harness:
        worker = harness.app.state.executor.pool.worker_id
        own = await harness.channel.declare_queue(f"{REPLICA_CONTROL_PREFIX}{worker}", passive=True)
        assert own.name.startswith(REPLICA_CONTROL_PREFIX)
        await harness.request_run(data)
        await wait_until(lambda: asyncio.sleep(0, marker.exists()), what="the step running")
        await drop_broker_connections(amqp_url)
        connection = await aio_pika.connect(amqp_url)  # a client of its own, as job-api's relay
        try:
            await broadcast_cancel(await connection.channel(), execution_id, "stop it")
        finally:
            await connection.close()
        sent = time.monotonic()
        outcome = await harness.wait_outcome(execution_id, timeout=30)
        assert outcome.type == "execution.cancelled", outcome.data
        assert outcome.data["reason"] == "stop it"
        assert time.monotonic() - sent < 20, "stopped on reconnecting, not by a heartbeat"


async def test_a_cancellation_sent_while_no_executor_runs_drops_the_run_later(
    database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """Every replica is away (scaled to zero, or all restarting) when a queued run is cancelled: the
    cancellation waits in ``executor.cancellations``, and the run is dropped when it arrives."""
    marker = tmp_path / "started"
    data = run_request_data([_sleeper(marker)])
    execution_id = data["execution_id"]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await declare_topology(channel)  # as job-api declares it at its start
        await broadcast_cancel(channel, execution_id, "not any more")
        queue = await channel.declare_queue(EXECUTOR_CANCELLATIONS, passive=True)
        assert queue.declaration_result.message_count == 1, "kept for the executors"
    finally:
        await connection.close()
    async with ExecutorHarness(_settings(database_url, amqp_url)) as harness:
        await harness.request_run(data)
        outcome = await harness.wait_outcome(execution_id, timeout=30)
        assert outcome.type == "execution.cancelled", outcome.data
        assert outcome.data["reason"] == "not any more"
        assert harness.of(execution_id, "execution.started") == []
        assert not marker.exists()
