"""Crash safety with real processes: a replica killed with SIGKILL mid-run, a replica drained with SIGTERM.

The victim replica runs as ``python -m automation_executor serve`` in a subprocess; the survivor runs
in-process (:class:`ExecutorHarness`). A tap on ``automation.events`` records every execution event.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from automation_contracts import CloudEvent, build_event
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import (
    TERMINAL_TYPES,
    TEST_ADMIN_TOKEN,
    ExecutorHarness,
    free_port,
    harness_settings,
    run_request_data,
    serve_environment,
    start_replica,
)
from automation_messaging.topology import COMMANDS, EVENTS, RUN_REQUESTED, declare_topology
from automation_testing import drop_broker_connections, wait_until

pytestmark = pytest.mark.integration
LEASE_SECONDS = 3.0
ADMIN = TEST_ADMIN_TOKEN


class Tap:
    """Every ``execution.*`` event published in the vhost, from before the first run; publishes run requests."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.events: list[CloudEvent] = []
        self._channel = channel

    async def request_run(self, data: dict[str, Any]) -> None:
        event = build_event(RUN_REQUESTED, source="/tests/executor", data=data)
        exchange = await self._channel.get_exchange(COMMANDS)
        message = aio_pika.Message(event.to_json_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, routing_key=RUN_REQUESTED, mandatory=True)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append(CloudEvent.from_json_bytes(message.body))

    def of(self, execution_id: str, event_type: str | None = None) -> list[CloudEvent]:
        return [
            e
            for e in self.events
            if isinstance(e.data, dict)
            and e.data.get("execution_id") == execution_id
            and (event_type is None or e.type == event_type)
        ]


@pytest_asyncio.fixture(loop_scope="session")
async def tap(amqp_url: str) -> AsyncIterator[Tap]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await declare_topology(channel)
    recorder = Tap(channel)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS, routing_key="execution.*")
    await queue.consume(recorder.on_message, no_ack=True)
    yield recorder
    await connection.close()


def _settings(database_url: str, amqp_url: str, **overrides: Any) -> ExecutorSettings:
    return harness_settings(
        database_url,
        amqp_url,
        executor_lease_seconds=LEASE_SECONDS,
        executor_reaper_interval_seconds=0.3,
        executor_kill_grace_seconds=1,
        **overrides,
    )


async def _start_victim(database_url: str, amqp_url: str, *, grace: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    worker = f"victim-{uuid.uuid4().hex[:6]}"
    env = serve_environment(
        database_url,
        amqp_url,
        port=port,
        AUTOMATION_EXECUTOR_WORKER_ID=worker,
        AUTOMATION_EXECUTOR_LEASE_SECONDS=str(LEASE_SECONDS),
        AUTOMATION_EXECUTOR_REAPER_INTERVAL_SECONDS="0.3",
        AUTOMATION_SHUTDOWN_GRACE_SECONDS=str(grace),
        AUTOMATION_LOG_LEVEL="WARNING",
    )
    process = await start_replica(env, port)
    return process, worker


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat[stat.rindex(")") + 2] != "Z":
            return True
    return False


async def _wait_running(marker: str) -> None:
    async def probe() -> bool:
        return _running(marker)

    await wait_until(probe, timeout=20, interval=0.02, what=f"{marker} running")


async def _outcome(tap: Tap, execution_id: str, timeout: float = 15.0) -> CloudEvent:
    async def terminal() -> CloudEvent | None:
        return next((e for e in tap.of(execution_id) if e.type in TERMINAL_TYPES), None)

    return await wait_until(terminal, timeout=timeout, what=f"the outcome of {execution_id}")


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _once_then(marker_file: Path, first: str, then: str, marker: str) -> dict[str, Any]:
    script = f"if [ -e {marker_file} ]; then {then}; else touch {marker_file}; {first}; fi"
    return {"name": "work", "type": "shell", "config": {"command": ["sh", "-c", script, marker]}}


async def test_a_replica_killed_mid_run_loses_the_attempt_and_another_completes_the_run(
    database_url: str, amqp_url: str, tap: Tap, tmp_path: Path
) -> None:
    marker = f"crash-{uuid.uuid4().hex}"
    data = run_request_data([_once_then(tmp_path / "first", "sleep 5", "echo second run", marker)], retries=1)
    execution_id = data["execution_id"]
    victim, victim_worker = await _start_victim(database_url, amqp_url, grace=5)
    survivor = ExecutorHarness(_settings(database_url, amqp_url))
    try:
        await tap.request_run(data)  # only the victim consumes yet
        await _wait_running(marker)
        await survivor.start()  # the second replica runs while the first one dies
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        async def orphan_gone() -> bool:
            return not _running(marker)

        await wait_until(orphan_gone, timeout=5, what="the killed replica's step to be killed with it")
        outcome = await survivor.wait_outcome(execution_id, attempt=2, timeout=30)
        assert outcome.type == "execution.succeeded", outcome.data
        assert outcome.data["result"]["work"]["stdout_tail"] == "second run\n"
        attempts = await survivor.attempts(execution_id)
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "lost"), (2, "succeeded")]
        assert attempts[0]["worker_id"] == victim_worker
        assert attempts[0]["error"] == "executor lost"
        assert attempts[1]["worker_id"] == survivor.app.state.executor.pool.worker_id  # type: ignore[union-attr]

        async def queue_empty() -> bool:
            queue = await survivor.channel.declare_queue("executor.runs", passive=True)
            return queue.declaration_result.message_count == 0

        await wait_until(queue_empty, what="executor.runs drained")
        terminal = [e for e in tap.of(execution_id) if e.type in TERMINAL_TYPES]
        by_attempt: dict[int, list[str]] = {}
        for event in terminal:
            assert isinstance(event.data, dict)
            by_attempt.setdefault(event.data["attempt"], []).append(event.type)
        assert by_attempt == {1: ["execution.failed"], 2: ["execution.succeeded"]}, "each outcome exactly once"
        lost = tap.of(execution_id, "execution.failed")[0].data
        assert isinstance(lost, dict)
        assert (lost["error"], lost["will_retry"]) == ("executor lost", True)
        final = [e for e in terminal if e.type != "execution.failed" or not (e.data or {}).get("will_retry")]
        assert len(final) == 1, "the job sees one final outcome"
        started = tap.of(execution_id, "execution.started")
        first_start = started[0].data
        assert isinstance(first_start, dict)
        assert first_start["worker"] == victim_worker
        lost_log = survivor.log_entries(execution_id, attempt=1)
        assert lost_log, "the lost attempt's log says what happened to it"
        assert lost_log[-1]["stream"] == "system"
        assert re.fullmatch(
            rf"attempt 1 lost: its executor {victim_worker} stopped renewing its lease"
            r" \(its lease ran out at \d\d:\d\d:\d\dZ\); attempt 2 at \d\d:\d\d:\d\dZ",
            lost_log[-1]["text"],
        ), lost_log[-1]["text"]
    finally:
        _reap(victim)
        await survivor.close()


async def test_sigterm_drains_running_executions_and_requeues_the_rest(
    database_url: str, amqp_url: str, tap: Tap, tmp_path: Path
) -> None:
    short_marker, long_marker = f"short-{uuid.uuid4().hex}", f"long-{uuid.uuid4().hex}"
    short = run_request_data(
        [{"name": "work", "type": "shell", "config": {"command": ["sh", "-c", "sleep 3; echo done", short_marker]}}]
    )
    long = run_request_data([_once_then(tmp_path / "first", "sleep 30", "echo second run", long_marker)])
    # the short run outlasts the survivor's start (its SIGTERM comes while the short one still runs)
    # and fits in the grace period; the long one does not
    victim, victim_worker = await _start_victim(database_url, amqp_url, grace=6)
    survivor = ExecutorHarness(_settings(database_url, amqp_url))
    try:
        await tap.request_run(short)
        await tap.request_run(long)
        await _wait_running(short_marker)
        await _wait_running(long_marker)
        await survivor.start()
        victim.send_signal(signal.SIGTERM)
        # uvicorn re-raises the SIGTERM it caught once its graceful shutdown (our drain) is over
        assert await asyncio.to_thread(victim.wait, 20) in (0, -signal.SIGTERM), "the drained replica exits"
        assert not _running(long_marker), "what did not fit in the grace period was stopped"
        short_outcome = await _outcome(tap, short["execution_id"])  # the tap saw it all, from before the start
        assert short_outcome.type == "execution.succeeded"
        [short_attempt] = await survivor.attempts(short["execution_id"])
        assert short_attempt["worker_id"] == victim_worker, "it finished on the draining replica"
        long_outcome = await survivor.wait_outcome(long["execution_id"], timeout=20)
        assert long_outcome.type == "execution.succeeded", long_outcome.data
        assert long_outcome.data["result"]["work"]["stdout_tail"] == "second run\n"
        [long_attempt] = await survivor.attempts(long["execution_id"])
        assert (long_attempt["status"], long_attempt["run_count"], long_attempt["lost_count"]) == ("succeeded", 2, 0)
        assert long_attempt["worker_id"] != victim_worker
        for data in (short, long):
            terminal = [e.type for e in tap.of(data["execution_id"]) if e.type in TERMINAL_TYPES]
            assert terminal == ["execution.succeeded"]
    finally:
        _reap(victim)
        await survivor.close()


async def test_a_run_goes_on_when_the_broker_drops_the_connection_and_runs_once(
    database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """RabbitMQ closes the executor's connection mid-run (a broker restart, a network blip): the run is
    not stopped and handed back but ends as attempt 1, its step run once, its log whole; the redelivered
    request finds it done (or running here) and is acked."""
    ran = tmp_path / "ran"
    script = f"echo before; echo ran >> {ran}; sleep 1; echo during; sleep 1; echo after"
    step = {"name": "work", "type": "shell", "config": {"command": ["sh", "-c", script]}}
    data = run_request_data([step], retries=2)
    execution_id = data["execution_id"]
    async with ExecutorHarness(_settings(database_url, amqp_url)) as harness:
        await harness.request_run(data)
        await harness.wait_for(execution_id, "execution.started")
        await wait_until(lambda: asyncio.sleep(0, ran.exists()), what="the step running")
        await drop_broker_connections(amqp_url)
        outcome = await harness.wait_outcome(execution_id, timeout=30)
        assert outcome.type == "execution.succeeded", outcome.data
        assert ran.read_text() == "ran\n", "the step ran once"
        attempts = await harness.attempts(execution_id)
        assert [(a["attempt"], a["status"], a["run_count"]) for a in attempts] == [(1, "succeeded", 1)]
        output = [e["text"] for e in harness.log_entries(execution_id) if e["stream"] == "stdout"]
        assert output == ["before", "during", "after"], "lines written while the broker was away are kept"
        assert "handed back" not in harness.log_text(execution_id)

        async def queue_empty() -> bool:
            queue = await harness.channel.declare_queue("executor.runs", passive=True)
            return queue.declaration_result.message_count == 0

        await wait_until(queue_empty, timeout=15, what="the redelivered request acked")
        await asyncio.sleep(1)
        assert await harness.attempts(execution_id) == attempts, "nothing ran it again"
