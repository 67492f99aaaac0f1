"""@every anchoring (no drift), one-offs, start/end windows, time zones and the policy arguments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from automation_schedule import GapPolicy, OverlapPolicy, ScheduleError, parse_schedule, preview


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


ANCHOR = utc(2026, 5, 4, 10, 7)


def test_every_fires_on_the_anchor_grid() -> None:
    schedule = parse_schedule("@every 15m", anchor=ANCHOR)
    assert (schedule.kind, schedule.interval, schedule.anchor) == ("every", timedelta(minutes=15), ANCHOR)
    assert schedule.next_after(utc(2026, 5, 4, 10)) == ANCHOR  # the anchor itself while ahead (k = 0)
    assert schedule.next_after(ANCHOR) == utc(2026, 5, 4, 10, 22)  # strictly after
    assert schedule.next_after(utc(2026, 5, 4, 10, 21, 59, 999_999)) == utc(2026, 5, 4, 10, 22)
    assert schedule.next_after(utc(2026, 5, 4, 10, 22)) == utc(2026, 5, 4, 10, 37)
    assert schedule.next_after(utc(2031, 1, 1)) == utc(2031, 1, 1, 0, 7)


def test_every_never_drifts_with_run_length() -> None:
    schedule = parse_schedule("@every 1h30m", anchor=ANCHOR)
    rng = random.Random(7)
    fire = ANCHOR
    for _ in range(200):
        finished = fire + timedelta(seconds=rng.uniform(0, 3 * 3600))  # runs shorter and longer than the interval
        following = schedule.next_after(finished)
        assert following is not None
        assert following > finished
        assert (following - ANCHOR) % timedelta(minutes=90) == timedelta(0)
        assert following - finished <= timedelta(minutes=90)
        fire = following


def test_every_anchors_at_start_at_then_at_the_epoch() -> None:
    start = utc(2026, 5, 4, 10, 7, 30)
    assert parse_schedule("@every 1h", start_at=start).next_after(utc(2026, 5, 4, 12)) == utc(2026, 5, 4, 12, 7, 30)
    unanchored = parse_schedule("@every 1h")
    assert unanchored.anchor == utc(1970, 1, 1)
    assert unanchored.next_after(utc(2026, 5, 4, 10, 30)) == utc(2026, 5, 4, 11)
    # 2026-01-01T00:00Z is 29,453,760 minutes after the epoch, a multiple of 7.
    assert parse_schedule("@every 7m").next_after(utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 7)
    assert parse_schedule("@every 7m").next_after(utc(2025, 12, 31, 23, 59)) == utc(2026, 1, 1)
    explicit = parse_schedule("@every 1h", anchor=utc(2026, 1, 1, 0, 20), start_at=start)
    assert explicit.next_after(utc(2026, 1, 1)) == utc(2026, 5, 4, 10, 20)


def test_every_is_absolute_time_across_dst() -> None:
    schedule = parse_schedule("@every 1h", timezone="Europe/Berlin")
    got = preview(schedule, after=utc(2026, 3, 28, 23, 30), count=4)
    assert got == [utc(2026, 3, 29, hour) for hour in range(4)]


def test_every_handles_fractional_and_second_precise_intervals() -> None:
    schedule = parse_schedule("@every 1.5s", anchor=utc(2026, 1, 1))
    assert preview(schedule, after=utc(2026, 1, 1), count=3) == [
        utc(2026, 1, 1, 0, 0, 1, 500_000),
        utc(2026, 1, 1, 0, 0, 3),
        utc(2026, 1, 1, 0, 0, 4, 500_000),
    ]


def test_every_close_to_the_end_of_time_ends() -> None:
    schedule = parse_schedule("@every 1000h")
    assert schedule.next_after(datetime.max.replace(tzinfo=UTC) - timedelta(hours=1)) is None


@pytest.mark.parametrize("name", ["start_at", "end_at", "anchor"])
@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # UTC: year 0
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),  # UTC: year 10000
    ],
)
def test_a_window_or_anchor_without_a_utc_value_is_refused_naming_it(name: str, value: datetime) -> None:
    with pytest.raises(ScheduleError, match="outside the calendar") as caught:
        parse_schedule("@hourly", **{name: value})  # type: ignore[arg-type]
    assert caught.value.field == name


EDGES = [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]


@pytest.mark.parametrize("expression", ["@hourly", "0 0 1 1 *", "0 0 29 2 *", "@every 1h", "* * * * * *"])
@pytest.mark.parametrize("zone", ["UTC", "Etc/GMT+12", "Pacific/Kiritimati", "Europe/Berlin"])
@pytest.mark.parametrize("start_at", [None, *EDGES])
@pytest.mark.parametrize("after", EDGES)
def test_searching_at_the_ends_of_the_calendar_never_overflows(
    expression: str, zone: str, start_at: datetime | None, after: datetime
) -> None:
    schedule = parse_schedule(expression, timezone=zone, start_at=start_at)
    for fire in preview(schedule, after=after, count=2):
        assert fire > after


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("@every 500ms", "@every interval 500ms is shorter than the minimum of 1s"),
        ("@every 0s", "is zero"),
        ("@every -1m", "is negative"),
        ("@every 1d", "unknown unit 'd'"),
        ("@every", "duration is empty"),
        ("@every 1h 30m", "unknown unit 'h '"),
    ],
)
def test_every_rejects_bad_intervals(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    assert reason in caught.value.reason
    assert caught.value.field == "schedule"


@pytest.mark.parametrize(
    "expression",
    [
        "2026-12-01T09:00:00+01:00",
        "@at 2026-12-01T09:00:00+01:00",
        "@AT 2026-12-01T08:00:00Z",
        "2026-12-01t08:00:00z",
        "2026-12-01 03:00:00-05:00",
    ],
)
def test_one_off_fires_once(expression: str) -> None:
    schedule = parse_schedule(expression, timezone="Asia/Tokyo")
    assert schedule.kind == "once"
    assert schedule.at == utc(2026, 12, 1, 8)
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2026, 12, 1, 8)
    assert schedule.next_after(utc(2026, 12, 1, 8)) is None
    assert preview(schedule, after=utc(2026, 1, 1), count=10) == [utc(2026, 12, 1, 8)]


def test_one_off_keeps_fractions_to_the_microsecond() -> None:
    assert parse_schedule("2026-12-01T08:00:00.123456789Z").at == utc(2026, 12, 1, 8, 0, 0, 123_456)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("2026-12-01T09:00:00", "has no UTC offset"),
        ("2026-02-30T09:00:00Z", "is not a real date and time"),
        ("2026-12-01T25:00:00Z", "is not a real date and time"),
        ("2026-12-01T09:00:00+25:00", "impossible UTC offset"),
        ("2026-12-01", "is not an RFC 3339 instant"),
        ("@at tomorrow", "is not an RFC 3339 instant"),
        ("@at", "is not an RFC 3339 instant"),
    ],
)
def test_one_off_errors(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    assert reason in caught.value.reason
    assert caught.value.field == "schedule"


def test_window_bounds_a_cron_schedule_inclusively() -> None:
    schedule = parse_schedule("0 * * * *", start_at=utc(2026, 1, 1, 3), end_at=utc(2026, 1, 1, 6))
    assert schedule.next_after(utc(2025, 1, 1)) == utc(2026, 1, 1, 3)  # start_at itself fires
    assert preview(schedule, after=utc(2020, 1, 1), count=10) == [utc(2026, 1, 1, h) for h in range(3, 7)]
    assert schedule.next_after(utc(2026, 1, 1, 6)) is None


def test_window_applies_to_every_and_one_offs() -> None:
    every = parse_schedule("@every 10m", start_at=utc(2026, 1, 1, 0, 5), end_at=utc(2026, 1, 1, 0, 30))
    assert preview(every, after=utc(2026, 1, 1), count=10) == [utc(2026, 1, 1, 0, m) for m in (5, 15, 25)]
    late = parse_schedule("2026-06-01T00:00:00Z", end_at=utc(2026, 5, 1))
    assert late.next_after(utc(2026, 1, 1)) is None
    early = parse_schedule("2026-06-01T00:00:00Z", start_at=utc(2026, 7, 1))
    assert early.next_after(utc(2026, 1, 1)) is None


def test_window_values_are_kept_in_utc() -> None:
    berlin_start = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=1)))
    schedule = parse_schedule("@daily", start_at=berlin_start)
    assert schedule.start_at == utc(2026, 1, 1, 8)
    assert schedule.start_at is not None
    assert schedule.start_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"start_at": datetime(2026, 1, 1)}, "start_at", "start_at must be timezone-aware"),
        ({"end_at": datetime(2026, 1, 1)}, "end_at", "end_at must be timezone-aware"),
        ({"anchor": datetime(2026, 1, 1)}, "anchor", "anchor must be timezone-aware"),
        ({"start_at": "2026-01-01"}, "start_at", "start_at must be a datetime, not str"),
        (
            {"start_at": utc(2026, 2, 1), "end_at": utc(2026, 1, 1)},
            "end_at",
            "end_at 2026-01-01T00:00:00+00:00 is before start_at 2026-02-01T00:00:00+00:00",
        ),
        ({"gap": "later"}, "gap", "gap policy 'later' is not one of: shift, skip"),
        ({"overlap": "second"}, "overlap", "overlap policy 'second' is not one of: first, last, both"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "europe/berlin"}, "timezone", "(did you mean 'Europe/Berlin'?)"),
        ({"timezone": ""}, "timezone", "time zone is empty"),
        ({"timezone": "../etc/passwd"}, "timezone", "unknown time zone"),
        ({"timezone": "localtime"}, "timezone", "is not a usable time zone"),
    ],
)
def test_argument_errors_name_their_field(kwargs: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("@hourly", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_policies_take_their_string_values() -> None:
    schedule = parse_schedule("@daily", gap="skip", overlap="both")  # type: ignore[arg-type]
    assert (schedule.gap, schedule.overlap) == (GapPolicy.SKIP, OverlapPolicy.BOTH)


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("@hourly").next_after(datetime(2026, 1, 1))
    assert caught.value.field == "after"


def test_iter_after_walks_until_the_window_ends() -> None:
    schedule = parse_schedule("0 12 * * *", timezone="America/New_York", end_at=utc(2026, 1, 10))
    got = list(schedule.iter_after(utc(2026, 1, 1)))
    assert got == [utc(2026, 1, day, 17) for day in range(1, 10)]
