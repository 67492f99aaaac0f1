"""Retry delays: full jitter, rounded down to the delay-queue ladder."""

from __future__ import annotations

import random

import pytest

from automation_executor.domain.backoff import LADDER_SECONDS, backoff_ceiling, retry_delay, round_to_ladder, will_retry


@pytest.mark.parametrize(
    ("delay", "step"),
    [(0.0, 1), (0.3, 1), (1.0, 1), (1.99, 1), (2.0, 2), (4.99, 2), (5.0, 5), (29.9, 10), (59.0, 30), (7200.0, 3600)],
)
def test_round_down_to_the_ladder(delay: float, step: int) -> None:
    assert round_to_ladder(delay) == step


def test_ladder_is_the_documented_one() -> None:
    assert LADDER_SECONDS == (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def test_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    assert [backoff_ceiling(a, 2, 300) for a in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff_ceiling(20, 2, 300) == 300
    assert backoff_ceiling(10_000, 2, 300) == 300


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert retry_delay(3, 2, 300, rand=lambda low, high: high) == 5  # ceiling 8 -> 5
    assert retry_delay(3, 2, 300, rand=lambda low, high: low) == 1  # minimum one second
    assert retry_delay(9, 2, 300, rand=lambda low, high: high) == 300
    rng = random.Random(7)
    delays = {retry_delay(6, 2, 60, rand=rng.uniform) for _ in range(500)}
    assert delays <= {1, 2, 5, 10, 30, 60}
    assert len(delays) >= 4


def test_retries_count_after_the_first_attempt() -> None:
    assert will_retry(1, 2)
    assert will_retry(2, 2)
    assert not will_retry(3, 2)
    assert not will_retry(1, 0)
