"""Micro-benchmark: microseconds per `Schedule.next_after`, for cron and ``@every``.

Not a test. Run it from the repository root with ``uv run python libs/schedule/bench_next_after.py``.
Each case walks forward fire by fire, as the scheduler does after each run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from automation_schedule import Schedule, parse_schedule

CASES: list[tuple[str, str]] = [
    ("*/15 * * * *", "UTC"),
    ("0 2 * * 1-5", "Europe/Berlin"),
    ("30 2 * * *", "America/New_York"),
    ("0 0 L * *", "Australia/Sydney"),
    ("0 9 1 * MON", "Europe/Berlin"),
    ("*/10 * * * * *", "UTC"),
    ("@every 90s", "UTC"),
    ("@every 1h30m", "Europe/Berlin"),
]
CALLS = 20_000


def bench(schedule: Schedule, calls: int) -> float:
    """Mean microseconds per next_after call over `calls` successive fires."""
    current = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    for _ in range(calls):
        following = schedule.next_after(current)
        if following is None:
            break
        current = following
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    """Print one line per case."""
    started = time.perf_counter()
    parsed = [parse_schedule(expression, timezone=zone) for expression, zone in CASES]
    parse_us = (time.perf_counter() - started) / len(CASES) * 1e6
    print(f"{'parse_schedule (mean)':<40} {parse_us:8.1f} us")
    for (expression, zone), schedule in zip(CASES, parsed, strict=True):
        print(f"{expression + ' @ ' + zone:<40} {bench(schedule, CALLS):8.2f} us/next_after")


if __name__ == "__main__":
    main()
