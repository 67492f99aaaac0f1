"""The worker pool's bookkeeping: which executions this replica is handling, and draining on shutdown.

Every delivery of a run request takes a slot keyed by (execution id, attempt) before it touches the
database, so a second delivery of the same attempt to this replica waits for the first instead of
running it again. On shutdown the pool stops handing out slots, waits for running executions within
the grace period, and cancels the rest (their child processes are killed and their messages go back to
the queue unacknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from automation_executor.metrics import POOL_UTILIZATION, RUNNING

SlotKey = tuple[uuid.UUID, int]


class PoolDraining(Exception):
    """The replica is shutting down and takes no new executions."""


def default_worker_id() -> str:
    """``<hostname>:<pid>:<random>``, unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Slot:
    """One execution handled by this replica."""

    execution_id: uuid.UUID
    attempt: int
    job_id: uuid.UUID
    task: asyncio.Task[object] | None
    taken_at: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    """Slots of the executions in progress on this replica."""

    def __init__(self, worker_id: str, concurrency: int) -> None:
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.draining = False
        self._slots: dict[SlotKey, Slot] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._update_gauges()

    @property
    def running(self) -> int:
        return len(self._slots)

    def get(self, execution_id: uuid.UUID, attempt: int) -> Slot | None:
        """The slot of an execution in progress here, if any."""
        return self._slots.get((execution_id, attempt))

    @contextlib.contextmanager
    def slot(self, execution_id: uuid.UUID, attempt: int, job_id: uuid.UUID) -> Iterator[Slot]:
        """Hold a slot for the block; raises :class:`PoolDraining` during shutdown, KeyError if taken."""
        if self.draining:
            raise PoolDraining("executor is shutting down")
        key = (execution_id, attempt)
        if key in self._slots:
            raise KeyError(key)
        current = asyncio.current_task()
        slot = Slot(execution_id, attempt, job_id, current)
        self._slots[key] = slot
        self._idle.clear()
        self._update_gauges()
        try:
            yield slot
        finally:
            del self._slots[key]
            slot.done.set()
            if not self._slots:
                self._idle.set()
            self._update_gauges()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every slot to be released; whether they were."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def abort_all(self) -> int:
        """Cancel every execution in progress (their handlers kill the child and requeue); how many."""
        cancelled = 0
        for slot in list(self._slots.values()):
            if slot.task is not None and not slot.task.done():
                slot.task.cancel("executor shutdown grace period elapsed")
                cancelled += 1
        return cancelled

    def _update_gauges(self) -> None:
        RUNNING.set(len(self._slots))
        POOL_UTILIZATION.set(len(self._slots) / self.concurrency)
