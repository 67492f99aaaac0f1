"""The worker pool's bookkeeping: which executions this replica is handling, and draining on shutdown.

Every delivery of a run request takes a slot keyed by (execution id, attempt) before it touches the
database, so a second delivery of the same attempt to this replica waits for the first instead of
running it again. A slot knows the run that holds the attempt's lease (``run_id``, renewed by the
heartbeat), the asyncio task that awaits the runner (``run_task``) and the child process it started.

A run is stopped in two ways. :meth:`Slot.stop` stops only the run task (a cancellation: SIGTERM to
the child's process group, SIGKILL after the grace period; or a lost lease: at once); the handler then
records the attempt ``cancelled`` (or nothing, when the lease was lost). :meth:`WorkerPool.abort_all`
cancels the handlers themselves at shutdown: their children are killed, their attempts handed back
and their messages requeued.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from automation_executor.launch import ChildHandle
from automation_executor.metrics import POOL_UTILIZATION, RUNNING
from automation_executor.processes import signal_group

if TYPE_CHECKING:
    from automation_executor.logstream import LogSink

SlotKey = tuple[uuid.UUID, int]
StopKind = Literal["cancel", "lease_lost"]
STOP_WORDS: dict[StopKind, str] = {"cancel": "cancelled", "lease_lost": "lease lost"}
"""How the run's log names each kind of stop."""


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
    run_id: uuid.UUID | None = None
    run_task: asyncio.Task[Any] | None = None
    child: ChildHandle = field(default_factory=ChildHandle)
    lease_deadline: float = 0.0
    stop_kind: StopKind | None = None
    stop_reason: str | None = None
    stopper: asyncio.Task[None] | None = None
    logs: LogSink | None = None
    """The run's log once the run started: a stop says there what it does."""

    @property
    def running(self) -> bool:
        """Whether the run task exists and has not ended."""
        return self.run_task is not None and not self.run_task.done()

    def request_stop(self, kind: StopKind, reason: str, grace: float) -> bool:
        """Stop the run in the background (see :meth:`stop`); False when it ended or is stopping already."""
        if not self._mark(kind, reason):
            return False
        if self.run_task is not None:
            self.stopper = asyncio.create_task(self._enforce(kind, grace), name=f"stop-{self.execution_id}")
        return True

    async def stop(self, kind: StopKind, reason: str, grace: float) -> None:
        """Stop the run: a cancellation gets SIGTERM on the child's group, then the task is cancelled (SIGKILL).

        A run not started yet is only marked: the handler sees the mark and does not start it.
        """
        if self._mark(kind, reason) and self.run_task is not None:
            await self._enforce(kind, grace)

    def _mark(self, kind: StopKind, reason: str) -> bool:
        if self.stop_kind is not None or (self.run_task is not None and self.run_task.done()):
            return False
        self.stop_kind, self.stop_reason = kind, reason
        return True

    async def _enforce(self, kind: StopKind, grace: float) -> None:
        task = self.run_task
        assert task is not None
        pid = self.child.pid
        self.child.stopping = True
        if kind == "cancel" and pid is not None and grace > 0 and signal_group(pid, signal.SIGTERM):
            self._say(kind, f"SIGTERM, SIGKILL after {grace:g}s")
            await asyncio.wait({task}, timeout=grace)
        else:
            self._say(kind, "SIGKILL")
        if not task.done():
            task.cancel(f"{kind}: {self.stop_reason}")

    def _say(self, kind: StopKind, how: str) -> None:
        if self.logs is not None:
            self.logs.add("system", None, f"{STOP_WORDS[kind]} ({self.stop_reason}): stopping ({how})")


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

    def of_execution(self, execution_id: uuid.UUID) -> list[Slot]:
        """Slots of any attempt of an execution."""
        return [slot for slot in self._slots.values() if slot.execution_id == execution_id]

    def leased(self) -> list[Slot]:
        """Slots whose run holds an attempt's lease (the heartbeat renews them)."""
        return [slot for slot in self._slots.values() if slot.run_id is not None]

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
