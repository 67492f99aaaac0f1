"""The worker pool: one slot per (execution, attempt), draining, aborting."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from automation_executor.pool import PoolDraining, WorkerPool, default_worker_id


async def test_slots_are_unique_and_counted() -> None:
    pool = WorkerPool("w", concurrency=4)
    execution, job = uuid.uuid4(), uuid.uuid4()
    with pool.slot(execution, 1, job) as slot:
        assert pool.running == 1
        assert pool.get(execution, 1) is slot
        assert pool.get(execution, 2) is None
        assert REGISTRY.get_sample_value("automation_executor_running_executions") == 1
        assert REGISTRY.get_sample_value("automation_executor_pool_utilization_ratio") == 0.25
        with pytest.raises(KeyError):
            pool.slot(execution, 1, job).__enter__()
        with pool.slot(execution, 2, job):
            assert pool.running == 2
    assert pool.running == 0
    assert slot.done.is_set()
    assert await pool.wait_idle(0.01)


async def test_draining_refuses_new_slots_and_waits_for_running_ones() -> None:
    pool = WorkerPool("w", concurrency=2)
    release = asyncio.Event()

    async def execution() -> None:
        with pool.slot(uuid.uuid4(), 1, uuid.uuid4()):
            await release.wait()

    task = asyncio.create_task(execution())
    await asyncio.sleep(0)
    pool.draining = True
    with pytest.raises(PoolDraining):
        pool.slot(uuid.uuid4(), 1, uuid.uuid4()).__enter__()
    assert not await pool.wait_idle(0.01)
    release.set()
    assert await pool.wait_idle(1)
    await task


async def test_abort_cancels_running_executions() -> None:
    pool = WorkerPool("w", concurrency=2)
    started = asyncio.Event()

    async def execution() -> None:
        with pool.slot(uuid.uuid4(), 1, uuid.uuid4()):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(execution())
    await started.wait()
    assert pool.abort_all() == 1
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.running == 0


def test_worker_ids_are_unique_per_process_start() -> None:
    assert default_worker_id() != default_worker_id()


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None, str]] = []

    def add(self, stream: str, step: str | None, text: str, ts: object = None) -> None:
        self.lines.append((stream, step, text))


async def test_a_stop_says_in_the_runs_log_what_it_does() -> None:
    pool = WorkerPool("w", concurrency=2)
    with pool.slot(uuid.uuid4(), 1, uuid.uuid4()) as slot:
        slot.logs = lines = _Lines()
        slot.run_task = asyncio.create_task(asyncio.Event().wait())
        await slot.stop("lease_lost", "the lease could not be renewed in time", grace=5)
        assert slot.run_task.cancelling() or slot.run_task.cancelled()
        assert slot.child.stopping, "the runner learns that the child's end is a stop, not a crash"
        assert lines.lines == [
            ("system", None, "lease lost (the lease could not be renewed in time): stopping (SIGKILL)")
        ]
        await slot.stop("cancel", "too late", grace=5)
        assert len(lines.lines) == 1, "a second stop of the same run says nothing"
        with pytest.raises(asyncio.CancelledError):
            await slot.run_task
