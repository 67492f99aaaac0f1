"""Slot accounting of the browser pool, driven by a hand-written fake browser launcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from automation_browser_pool.pool import BrowserPool, PoolClosed, PoolStartError, SlotTimeout
from automation_browser_pool.pool.testing import FakeBrowser, FakeLauncher
from automation_testing import wait_until


@contextlib.asynccontextmanager
async def running_pool(
    launcher: FakeLauncher, *, size: int = 2, per: int = 2, recycle_after: int = 1000
) -> AsyncIterator[BrowserPool[FakeBrowser]]:
    pool = BrowserPool(
        launcher.launch,
        size=size,
        contexts_per_browser=per,
        recycle_after=recycle_after,
        supervise_interval=0.01,
        relaunch_delay=0.01,
    )
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def hold(pool: BrowserPool[FakeBrowser], count: int, stack: contextlib.AsyncExitStack) -> list[FakeBrowser]:
    return [await stack.enter_async_context(pool.slot(timeout=1)) for _ in range(count)]


async def test_start_launches_the_warm_browsers() -> None:
    launcher = FakeLauncher()
    async with running_pool(launcher, size=3, per=4) as pool:
        status = pool.status()
        assert len(launcher.launched) == 3
        assert (status.connected_browsers, status.capacity_contexts, status.busy_contexts) == (3, 12, 0)
        await pool.check()
    assert all(b.closed for b in launcher.launched)


async def test_slots_spread_over_browsers_and_are_counted() -> None:
    async with running_pool(FakeLauncher()) as pool, contextlib.AsyncExitStack() as stack:
        first, second = await hold(pool, 2, stack)
        assert first is not second
        assert pool.status().busy_contexts == 2
        await hold(pool, 2, stack)
        status = pool.status()
        assert status.busy_contexts == 4
        assert [b.active_contexts for b in status.browsers] == [2, 2]
    assert pool.status().busy_contexts == 0


async def test_a_full_pool_makes_the_next_task_wait_then_time_out() -> None:
    async with running_pool(FakeLauncher(), size=1, per=2) as pool, contextlib.AsyncExitStack() as stack:
        await hold(pool, 2, stack)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(SlotTimeout, match=r"within 0\.2s"):
            async with pool.slot(timeout=0.2):
                pytest.fail("no slot should be free")
        assert loop.time() - started >= 0.2
        assert pool.status().waiting_tasks == 0
        assert pool.status().busy_contexts == 2


async def test_a_released_slot_goes_to_a_waiting_task() -> None:
    async with running_pool(FakeLauncher(), size=1, per=1) as pool:
        got: list[FakeBrowser] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with pool.slot(timeout=1):
                await release.wait()

        async def waiter() -> None:
            async with pool.slot(timeout=5) as browser:
                got.append(browser)

        holding = asyncio.create_task(holder())
        await wait_until(lambda: asyncio.sleep(0, pool.status().busy_contexts == 1), what="the first slot taken")
        waiting = asyncio.create_task(waiter())
        await wait_until(lambda: asyncio.sleep(0, pool.status().waiting_tasks == 1), what="a waiting task")
        assert got == []
        release.set()
        await asyncio.gather(holding, waiting)
        assert len(got) == 1
        assert pool.status().busy_contexts == 0


async def test_a_browser_is_recycled_after_n_tasks() -> None:
    launcher = FakeLauncher()
    async with running_pool(launcher, size=1, per=2, recycle_after=3) as pool:
        first = launcher.launched[0]
        async with pool.slot(timeout=1), pool.slot(timeout=1):
            pass
        async with pool.slot(timeout=1) as third:
            assert third is first
            await wait_until(lambda: asyncio.sleep(0, len(launcher.launched) == 2), what="the replacement launch")
            assert not first.closed, "a retiring browser finishes its running task first"
            status = pool.status()
            assert [b.retiring for b in status.browsers] == [True, False]
        await wait_until(lambda: asyncio.sleep(0, first.closed), what="the recycled browser closed")
        async with pool.slot(timeout=1) as fourth:
            assert fourth is launcher.launched[1]
        assert pool.status().restarts == 1
        assert [b.tasks_served for b in pool.status().browsers] == [1]


async def test_a_crashed_browser_is_replaced() -> None:
    launcher = FakeLauncher()
    async with running_pool(launcher, size=2, per=1) as pool:
        launcher.launched[0].crash()
        await wait_until(lambda: asyncio.sleep(0, len(launcher.launched) == 3), what="the replacement launch")
        await wait_until(lambda: asyncio.sleep(0, pool.status().connected_browsers == 2), what="two browsers again")
        assert [b.number for b in pool.status().browsers] == [2, 3]
        assert pool.status().restarts == 1


async def test_a_browser_crashing_under_a_task_is_dropped_when_the_task_ends() -> None:
    launcher = FakeLauncher()
    pool = BrowserPool(launcher.launch, size=1, contexts_per_browser=2, recycle_after=100, supervise_interval=60)
    await pool.start()
    try:
        async with pool.slot(timeout=1) as browser:
            browser.crash()
        await wait_until(lambda: asyncio.sleep(0, len(launcher.launched) == 2), what="the replacement launch")
        async with pool.slot(timeout=1) as replacement:
            assert replacement is launcher.launched[1]
    finally:
        await pool.close()


async def test_failed_launches_are_retried() -> None:
    launcher = FakeLauncher(failures=2)
    async with running_pool(launcher, size=3, per=1) as pool:
        assert pool.status().connected_browsers == 1
        await wait_until(lambda: asyncio.sleep(0, pool.status().connected_browsers == 3), what="the relaunches")
        launcher.failures = 2
        launcher.launched[0].crash()
        await wait_until(lambda: asyncio.sleep(0, launcher.failures == 0), what="two failed relaunches")
        await wait_until(lambda: asyncio.sleep(0, pool.status().connected_browsers == 3), what="the third relaunch")
        assert len(launcher.launched) == 4


async def test_start_fails_when_no_browser_launches() -> None:
    launcher = FakeLauncher(failures=2)
    pool = BrowserPool(launcher.launch, size=2, contexts_per_browser=1, recycle_after=10)
    with pytest.raises(PoolStartError, match="fake launch failure"):
        await pool.start()


async def test_readiness_fails_without_a_connected_browser() -> None:
    launcher = FakeLauncher()
    pool = BrowserPool(launcher.launch, size=1, contexts_per_browser=1, recycle_after=10, supervise_interval=60)
    await pool.start()
    try:
        await pool.check()
        launcher.launched[0].crash()
        with pytest.raises(RuntimeError, match="no browser connected"):
            await pool.check()
    finally:
        await pool.close()


async def test_closing_wakes_waiters_with_pool_closed() -> None:
    launcher = FakeLauncher()
    pool = BrowserPool(launcher.launch, size=1, contexts_per_browser=1, recycle_after=10)
    await pool.start()
    async with contextlib.AsyncExitStack() as stack:
        await hold(pool, 1, stack)

        async def waiter() -> None:
            async with pool.slot(timeout=5):
                pytest.fail("the pool is closing")

        waiting = asyncio.create_task(waiter())
        await wait_until(lambda: asyncio.sleep(0, pool.status().waiting_tasks == 1), what="a waiting task")
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiting
    assert launcher.open_browsers == []


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BrowserPool(FakeLauncher().launch, size=0, contexts_per_browser=1, recycle_after=1)
