"""Go durations, good and bad, and the deterministic per-job jitter."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from automation_schedule import ScheduleError, jitter_offset, parse_go_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("300ms", timedelta(milliseconds=300)),
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30, milliseconds=500)),
        ("1h0m0s", timedelta(hours=1)),
        ("250us", timedelta(microseconds=250)),
        ("250\u00b5s", timedelta(microseconds=250)),  # micro sign
        ("250\u03bcs", timedelta(microseconds=250)),  # Greek mu
        ("1500ns", timedelta(microseconds=1)),  # truncated to the microsecond
        ("1000000ns", timedelta(milliseconds=1)),
        (".5s", timedelta(milliseconds=500)),
        ("5.s", timedelta(seconds=5)),
        ("+10s", timedelta(seconds=10)),
        ("0.1s", timedelta(milliseconds=100)),
        ("1m1m", timedelta(minutes=2)),
        ("2562047h", timedelta(hours=2562047)),  # Go's largest whole-hour duration
    ],
)
def test_valid_go_durations(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "duration is empty"),
        ("-5m", "is negative"),
        ("0", "is zero"),
        ("0s", "is zero"),
        ("0h0m", "is zero"),
        ("+", "has no number"),
        ("10", "is missing a unit after '10'"),
        ("1h30", "is missing a unit after '30'"),
        ("5d", "unknown unit 'd'"),
        ("1H", "unknown unit 'H'"),
        ("1h 30m", "unknown unit 'h '"),
        ("h", "expected a number at 'h'"),
        (".s", "expected a number"),
        ("1.2.3s", "is missing a unit after '1.2'"),
        ("abc", "expected a number"),
        ("100ns", "shorter than one microsecond"),
        ("2562048h", "too large"),
    ],
)
def test_invalid_go_durations_say_why(text: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_go_duration(text)
    assert reason in caught.value.reason
    assert caught.value.field == "duration"


def test_a_duration_must_be_a_string() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_go_duration(90)  # type: ignore[arg-type]


def test_jitter_is_deterministic_per_job_and_within_bounds() -> None:
    assert jitter_offset("job-1", 60) == jitter_offset("job-1", 60)
    offsets = [jitter_offset(f"job-{i}", 60) for i in range(2000)]
    assert all(timedelta(0) <= offset < timedelta(seconds=60) for offset in offsets)
    seconds = sorted(offset.total_seconds() for offset in offsets)
    assert seconds[0] < 1  # spread over the whole range
    assert seconds[-1] > 59
    assert len(set(offsets)) > 1990


def test_jitter_scales_with_the_maximum_and_keeps_fractions() -> None:
    assert jitter_offset("a", 0.5) < timedelta(milliseconds=500)
    assert jitter_offset("a", 0.000_001) == timedelta(0)  # one microsecond span: only zero fits
    assert jitter_offset("a", 0) == timedelta(0)
    assert jitter_offset("job-7", 3600) != jitter_offset("job-8", 3600)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_jitter_rejects_negative_and_non_finite_maxima(bad: float) -> None:
    with pytest.raises(ScheduleError) as caught:
        jitter_offset("job", bad)
    assert caught.value.field == "max_seconds"
