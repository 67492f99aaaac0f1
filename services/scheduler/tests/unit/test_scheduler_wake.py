"""The fire loop's wake signal: early wake only for earlier deadlines (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from automation_scheduler.wake import WakeSignal, parse_payload

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


async def test_sleep_times_out_without_a_poke() -> None:
    signal = WakeSignal()
    signal.arm()
    assert await signal.sleep(T0, 0.01) is False


async def test_an_earlier_time_wakes_the_sleeper() -> None:
    signal = WakeSignal()
    signal.arm()
    sleeper = asyncio.create_task(signal.sleep(T0, 5))
    await asyncio.sleep(0)
    signal.poke(T0 - timedelta(seconds=1))
    assert await asyncio.wait_for(sleeper, 1) is True


async def test_a_later_or_equal_time_does_not_wake_the_sleeper() -> None:
    signal = WakeSignal()
    signal.arm()
    sleeper = asyncio.create_task(signal.sleep(T0, 0.05))
    await asyncio.sleep(0)
    signal.poke(T0)
    signal.poke(T0 + timedelta(seconds=1))
    assert await sleeper is False


async def test_an_unconditional_poke_wakes_the_sleeper() -> None:
    signal = WakeSignal()
    signal.arm()
    sleeper = asyncio.create_task(signal.sleep(T0, 5))
    await asyncio.sleep(0)
    signal.poke()
    assert await asyncio.wait_for(sleeper, 1) is True


async def test_a_poke_while_busy_is_not_lost() -> None:
    signal = WakeSignal()
    signal.arm()
    signal.poke(T0 + timedelta(days=1))  # the loop is firing, not sleeping: any change may matter
    assert await signal.sleep(T0, 5) is True


async def test_arm_forgets_earlier_pokes() -> None:
    signal = WakeSignal()
    signal.poke()
    signal.arm()
    assert await signal.sleep(None, 0.01) is False


def test_notify_payloads() -> None:
    assert parse_payload("2026-11-23T12:00:00+00:00") == T0
    assert parse_payload("") is None
    assert parse_payload("garbage") is None
