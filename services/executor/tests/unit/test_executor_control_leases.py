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
from automation_executor.leases import DatabaseStalled, LeaseKeeper, Periodic, Reaped, Reaper
from automation_executor.pool import Slot, WorkerPool


@dataclass
class Leases:
    """Answers renewals from a script: ``held`` (run id → cancel reason) or an error."""

    held: dict[uuid.UUID, str | None] = field(default_factory=dict)
    failing: bool = False
    hanging: bool = False
    lease_seconds: float = 30.0
    renewed: list[list[uuid.UUID]] = field(default_factory=list)

    async def renew(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        self.renewed.append(list(run_ids))
        if self.hanging:
            await asyncio.Event().wait()  # no answer, no error: a database that stopped answering
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


async def test_a_renewal_without_an_answer_is_given_up_and_the_runs_fenced_by_their_deadline() -> None:
    """A database that stops answering (frozen, or a network dropping packets) raises nothing: the
    renewal is given up after a heartbeat, and the fence stops each run before its lease can expire in
    the database, from when another replica may record it lost and run it again."""
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    leases = Leases(hanging=True, lease_seconds=0.3)
    keeper = _keeper(leases, pool, clock)
    slot.lease_deadline = clock.now + 0.3
    await asyncio.wait_for(keeper.renew_once(), timeout=5)  # given up after 0.1 s (a third of the lease)
    assert len(leases.renewed) == 1
    assert slot.stop_kind is None, "still within the lease: keep running"
    assert keeper.fence_every == pytest.approx(0.015)
    clock.now += 0.3 - 0.02
    assert await keeper.fence_overdue() == 0, "more than a fence interval before the deadline"
    clock.now += 0.01
    assert await keeper.fence_overdue() == 1, "the last fence interval before the deadline"
    await task
    assert (slot.stop_kind, slot.stop_reason) == ("lease_lost", "the lease could not be renewed in time")
    assert await keeper.fence_overdue() == 0, "stopped once"


async def test_the_fence_leaves_runs_whose_leases_were_renewed_alone() -> None:
    pool, clock = WorkerPool("w", 2), Clock()
    slot, task, _ = await _running_slot(pool)
    assert slot.run_id is not None
    keeper = _keeper(Leases(held={slot.run_id: None}), pool, clock)
    assert keeper.fence_every == 1.0, "at most a second"
    clock.now = 1028.5
    await keeper.renew_once()
    clock.now = 1031.0
    assert await keeper.fence_overdue() == 0, "renewed at 1028.5: its deadline is 1058.5"
    clock.now = 1057.6
    assert await keeper.fence_overdue() == 1
    await task


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
    clock: Clock | None = None
    answer_takes: float = 0.0
    stalled: float | None = None

    async def answers(self) -> None:
        self.asked += 1
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if self.clock is not None:
            self.clock.now += self.answer_takes

    async def reap_expired(self, limit: int = 100, *, stall_seconds: float | None = None) -> list[Reaped]:
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if self.stalled is not None:
            assert stall_seconds == self.lease_seconds / 6
            raise DatabaseStalled(self.stalled)
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


async def test_the_reaper_waits_a_lease_period_after_the_database_answered_it_late() -> None:
    """A frozen database (or a network dropping packets) raises nothing: the reaper's look for expired
    leases waits through it, and finds the leases no holder could renew meanwhile. Found late (over a
    sixth of the lease), they are left as they are, and the holders get a lease period to renew."""
    clock = Clock()
    leases = ReapingLeases(batches=[2, 4], clock=clock)
    reaper = _settled_reaper(leases, clock)
    await reaper.reap_once()
    clock.now += leases.lease_seconds
    leases.stalled = 21.0
    assert await reaper.reap_once() == 0
    assert leases.batches == [2, 4], "nothing recorded"
    leases.stalled = None
    clock.now += leases.lease_seconds - 1
    assert await reaper.reap_once() == 0, "a lease period from the late answer"
    leases.answer_takes = 5.1
    assert await reaper.reap_once() == 0, "a late answer while waiting starts the wait again"
    leases.answer_takes = 0.0
    clock.now += leases.lease_seconds - 1
    assert await reaper.reap_once() == 0
    assert leases.batches == [2, 4]
    clock.now += 1
    assert await reaper.reap_once() == 2
