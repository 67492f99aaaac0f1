"""Retry delays: exponential backoff with full jitter, rounded down to a fixed ladder of delay queues.

RabbitMQ expires messages only at the head of a queue, so each possible delay has its own TTL queue on
``automation.retry``; a delay is rounded *down* to the nearest step of :data:`LADDER_SECONDS` (never
below the first step), so a retry never waits longer than its policy allows.
"""

from __future__ import annotations

import random
from collections.abc import Callable

LADDER_SECONDS: tuple[int, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""The delay queues declared at start, in seconds."""

MAX_EXPONENT = 62


def backoff_ceiling(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """The upper bound of the delay after failed attempt ``attempt`` (1-based): ``min(max, base * 2**(attempt-1))``."""
    exponent = min(max(attempt - 1, 0), MAX_EXPONENT)
    return min(max_seconds, base_seconds * 2.0**exponent)


def round_to_ladder(delay_seconds: float, ladder: tuple[int, ...] = LADDER_SECONDS) -> int:
    """The largest ladder step not above ``delay_seconds``; the first step for anything smaller."""
    chosen = ladder[0]
    for step in ladder:
        if step <= delay_seconds:
            chosen = step
        else:
            break
    return chosen


def retry_delay(
    attempt: int,
    base_seconds: float,
    max_seconds: float,
    *,
    rand: Callable[[float, float], float] = random.uniform,
) -> int:
    """Full-jitter delay in seconds before the attempt after ``attempt``: ``uniform(0, ceiling)`` on the ladder."""
    return round_to_ladder(rand(0.0, backoff_ceiling(attempt, base_seconds, max_seconds)))


def will_retry(attempt: int, retries: int) -> bool:
    """Whether a failed ``attempt`` is followed by another (``retries`` counts retries after the first)."""
    return attempt <= retries
