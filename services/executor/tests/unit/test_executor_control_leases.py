"""The heartbeat (renewal, cancellations found, lost leases, fencing) and the reaper loop, with fakes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation_executor.followups import Ending
from automation_executor.leases import LeaseKeeper, Periodic, Reaped, Reaper
from automation_executor.pool import Slot, WorkerPool


@dataclass
class Leases:
    """Answers renewals from a script: ``held`` (run id → cancel reason) or an error."""

    held: dict[uuid.UUID, str | None] = field(default_factory=dict)
    failing: bool = False
    lease_seconds: float = 30.0
    renewed: list[list[uuid.UUID]] = field(default_factory=list)

    async def renew(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        self.renewed.append(list(run_ids))
        if self.failing:
            raise OSError("database unreachable")
        return {run_id: self.held[run_id] for run_id in run_ids if run_id in self.held}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _running_slot(pool: WorkerPool) -> tuple[Slot, asyncio.Task[None], asyncio.Event]:
    ready = asyncio.Event()
    holder: list[Slot] = []

    async def execution() -> None:
        with pool.slot(uuid.uuid4(), 1, uuid.uuid4()) as slot:
            slot.run_id = uuid.uuid4()
            slot.lease_deadline = 1030.0
            slot.run_task = asyncio.create_task(asyncio.Event().wait())
            holder.append(slot)
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.run_task

    task = asyncio.create_task(execution())
    await ready.wait()
    return holder[0], task, ready


def _keeper(leases: Leases, pool: WorkerPool, clock: Clock) -> LeaseKeeper:
    return LeaseKeeper(leases, pool, kill_grace=0.0, monotonic=clock)  # type: ignore[arg-type]


async def test_a_held_lease_is_renewed_and_its_deadline_moves() -> None:
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    assert slot.run_id is not None
    leases = Leases(held={slot.run_id: None})
    clock.now = 1010.0
    await _keeper(leases, pool, clock).renew_once()
    assert leases.renewed == [[slot.run_id]]
    assert slot.lease_deadline == 1040.0
    assert slot.stop_kind is None
    slot.request_stop("cancel", "end of test", 0)
    await task


async def test_a_cancellation_found_by_the_heartbeat_stops_the_run() -> None:
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    assert slot.run_id is not None
    await _keeper(Leases(held={slot.run_id: "stop it"}), pool, clock).renew_once()
    await task
    assert (slot.stop_kind, slot.stop_reason) == ("cancel", "stop it")


async def test_a_lease_taken_over_stops_the_run_at_once() -> None:
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    await _keeper(Leases(held={}), pool, clock).renew_once()
    await task
    assert slot.stop_kind == "lease_lost"


async def test_failing_renewals_fence_the_runs_only_once_the_lease_ran_out() -> None:
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    keeper = _keeper(Leases(failing=True), pool, clock)
    clock.now = 1020.0
    await keeper.renew_once()
    assert slot.stop_kind is None, "still within the lease: keep running"
    clock.now = 1031.0
    await keeper.renew_once()
    await task
    assert slot.stop_kind == "lease_lost"


async def test_nothing_to_renew_costs_nothing() -> None:
    leases = Leases()
    await _keeper(leases, WorkerPool("w", 2), Clock()).renew_once()
    assert leases.renewed == []


@dataclass
class ReapingLeases:
    batches: list[int]
    forgotten: list[timedelta] = field(default_factory=list)
    lease_seconds: float = 30.0
    down: bool = False
    asked: int = 0

    async def answers(self) -> None:
        self.asked += 1
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")

    async def reap_expired(self, limit: int = 100) -> list[Reaped]:
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        size = self.batches.pop(0) if self.batches else 0
        ending = Ending("lost", {}, will_retry=True)
        return [Reaped(uuid.uuid4(), 1, "gone", ending) for _ in range(size)]

    async def forget_cancellations(self, older_than: timedelta) -> int:
        self.forgotten.append(older_than)
        return 0


def _settled_reaper(leases: ReapingLeases, clock: Clock, **kwargs: Any) -> Reaper:
    return Reaper(leases, retention=timedelta(days=7), monotonic=clock, **kwargs)  # type: ignore[arg-type]


async def test_the_reaper_drains_full_batches_and_forgets_old_cancellations_now_and_then() -> None:
    leases, clock = ReapingLeases(batches=[100, 3]), Clock()
    reaper = _settled_reaper(leases, clock, forget_every=2)
    assert await reaper.reap_once() == 0, "a lease period first"
    clock.now += leases.lease_seconds
    assert await reaper.reap_once() == 103
    assert await reaper.reap_once() == 0
    assert await reaper.reap_once() == 0
    assert leases.forgotten == [timedelta(days=7), timedelta(days=7)]


async def test_the_reaper_waits_a_lease_period_after_an_outage_before_taking_leases_for_lost() -> None:
    """Heartbeats stop while the database is away: the leases that ran out meanwhile are not evidence
    that their holders vanished until the holders have had a lease period to renew them."""
    leases, clock = ReapingLeases(batches=[2, 5]), Clock()
    reaper = _settled_reaper(leases, clock)
    await reaper.reap_once()
    clock.now += leases.lease_seconds
    assert await reaper.reap_once() == 2
    leases.down = True
    with pytest.raises(ConnectionRefusedError):
        await reaper.reap_once()
    leases.down = False
    clock.now += 100
    assert await reaper.reap_once() == 0, "back: the holders renew or record first"
    clock.now += leases.lease_seconds - 1
    assert await reaper.reap_once() == 0
    assert leases.batches == [5], "nothing reaped during the wait"
    clock.now += 1
    assert await reaper.reap_once() == 5
    assert reaper.settled()


async def test_a_periodic_loop_survives_a_failing_tick() -> None:
    calls: list[datetime] = []
    third = asyncio.Event()

    async def tick() -> None:
        calls.append(datetime.now(UTC))
        if len(calls) == 1:
            raise RuntimeError("transient")
        if len(calls) == 3:
            third.set()

    loop = Periodic("test_loop", tick, 0.01)
    loop.start()
    await asyncio.wait_for(third.wait(), 5)
    await loop.stop()
    assert len(calls) >= 3
