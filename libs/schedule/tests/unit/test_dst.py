"""Cron in wall time across DST, north and south, with exact UTC instants.

2026 transitions (checked first, so a tzdata change shows up as such):
Europe/Berlin 29 Mar 01:00Z (02:00 CET -> 03:00 CEST) and 25 Oct 01:00Z (03:00 CEST -> 02:00 CET);
America/New_York 8 Mar 07:00Z (02:00 EST -> 03:00 EDT) and 1 Nov 06:00Z (02:00 EDT -> 01:00 EST);
Australia/Sydney 4 Apr 16:00Z (03:00 AEDT -> 02:00 AEST) and 3 Oct 16:00Z (02:00 AEST -> 03:00 AEDT);
Australia/Lord_Howe 4 Apr 15:00Z (02:00 +11 -> 01:30 +10:30) and 3 Oct 15:30Z (02:00 +10:30 -> 02:30 +11).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from automation_schedule import GapPolicy, OverlapPolicy, parse_schedule, preview

SHIFT, SKIP = GapPolicy.SHIFT, GapPolicy.SKIP
FIRST, LAST, BOTH = OverlapPolicy.FIRST, OverlapPolicy.LAST, OverlapPolicy.BOTH
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(
    expression: str,
    zone: str,
    after: datetime,
    count: int,
    gap: GapPolicy = SHIFT,
    overlap: OverlapPolicy = FIRST,
) -> list[datetime]:
    schedule = parse_schedule(expression, timezone=zone, gap=gap, overlap=overlap)
    return preview(schedule, after=after, count=count)


TRANSITIONS = [
    ("Europe/Berlin", utc(2026, 3, 29, 1), timedelta(hours=1), timedelta(hours=2)),
    ("Europe/Berlin", utc(2026, 10, 25, 1), timedelta(hours=2), timedelta(hours=1)),
    ("America/New_York", utc(2026, 3, 8, 7), timedelta(hours=-5), timedelta(hours=-4)),
    ("America/New_York", utc(2026, 11, 1, 6), timedelta(hours=-4), timedelta(hours=-5)),
    ("Australia/Sydney", utc(2026, 4, 4, 16), timedelta(hours=11), timedelta(hours=10)),
    ("Australia/Sydney", utc(2026, 10, 3, 16), timedelta(hours=10), timedelta(hours=11)),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 15), timedelta(hours=11), timedelta(hours=10, minutes=30)),
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30), timedelta(hours=10, minutes=30), timedelta(hours=11)),
]


@pytest.mark.parametrize(("zone", "instant", "before", "after"), TRANSITIONS)
def test_the_tz_database_has_the_transitions_these_tests_assume(
    zone: str, instant: datetime, before: timedelta, after: timedelta
) -> None:
    tz = ZoneInfo(zone)
    assert (instant - timedelta(seconds=1)).astimezone(tz).utcoffset() == before
    assert instant.astimezone(tz).utcoffset() == after


# --- daily 02:30 in each zone, across both transitions -------------------------------------------


@pytest.mark.parametrize(
    ("zone", "after", "gap", "expected"),
    [
        # 02:30 does not exist: shift fires at the gap's end (03:00 local), skip not at all.
        (
            "Europe/Berlin",
            utc(2026, 3, 28),
            SHIFT,
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)],
        ),
        (
            "Europe/Berlin",
            utc(2026, 3, 28),
            SKIP,
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)],
        ),
        (
            "America/New_York",
            utc(2026, 3, 7),
            SHIFT,
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)],
        ),
        (
            "America/New_York",
            utc(2026, 3, 7),
            SKIP,
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)],
        ),
        (
            "Australia/Sydney",
            utc(2026, 10, 2),
            SHIFT,
            [utc(2026, 10, 2, 16, 30), utc(2026, 10, 3, 16), utc(2026, 10, 4, 15, 30)],
        ),
        (
            "Australia/Sydney",
            utc(2026, 10, 2),
            SKIP,
            [utc(2026, 10, 2, 16, 30), utc(2026, 10, 4, 15, 30), utc(2026, 10, 5, 15, 30)],
        ),
        # Lord Howe's gap is 02:00-02:30, so 02:30 itself exists and is the gap's end.
        (
            "Australia/Lord_Howe",
            utc(2026, 10, 2),
            SHIFT,
            [utc(2026, 10, 2, 16), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 30)],
        ),
        (
            "Australia/Lord_Howe",
            utc(2026, 10, 2),
            SKIP,
            [utc(2026, 10, 2, 16), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 30)],
        ),
    ],
)
def test_daily_0230_across_spring_forward(zone: str, after: datetime, gap: GapPolicy, expected: list[datetime]) -> None:
    assert fires("30 2 * * *", zone, after, 3, gap=gap) == expected


@pytest.mark.parametrize(
    ("zone", "after", "overlap", "expected"),
    [
        (
            "Europe/Berlin",
            utc(2026, 10, 24),
            FIRST,
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            "Europe/Berlin",
            utc(2026, 10, 24),
            LAST,
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            "Europe/Berlin",
            utc(2026, 10, 24),
            BOTH,
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # New York repeats 01:00-02:00, so 02:30 happens once: 02:30 EST.
        (
            "America/New_York",
            utc(2026, 10, 31),
            BOTH,
            [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
        (
            "Australia/Sydney",
            utc(2026, 4, 3),
            FIRST,
            [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)],
        ),
        (
            "Australia/Sydney",
            utc(2026, 4, 3),
            LAST,
            [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 16, 30), utc(2026, 4, 5, 16, 30)],
        ),
        (
            "Australia/Sydney",
            utc(2026, 4, 3),
            BOTH,
            [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30), utc(2026, 4, 5, 16, 30)],
        ),
        # Lord Howe repeats 01:30-02:00; 02:30 happens once, now at +10:30.
        (
            "Australia/Lord_Howe",
            utc(2026, 4, 3),
            BOTH,
            [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 16), utc(2026, 4, 5, 16)],
        ),
    ],
)
def test_daily_0230_across_fall_back(
    zone: str, after: datetime, overlap: OverlapPolicy, expected: list[datetime]
) -> None:
    assert fires("30 2 * * *", zone, after, len(expected), overlap=overlap) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "after", "overlap", "expected"),
    [
        (
            "30 1 * * *",
            "America/New_York",
            utc(2026, 10, 31),
            FIRST,
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            utc(2026, 10, 31),
            LAST,
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            utc(2026, 4, 3),
            FIRST,
            [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)],
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            utc(2026, 4, 3),
            LAST,
            [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 15, 15), utc(2026, 4, 5, 15, 15)],
        ),
    ],
)
def test_a_repeated_wall_time_fires_per_the_overlap_policy(
    expression: str, zone: str, after: datetime, overlap: OverlapPolicy, expected: list[datetime]
) -> None:
    assert fires(expression, zone, after, 3, overlap=overlap) == expected


def test_lord_howe_half_hour_gap_shift_and_skip() -> None:
    assert fires("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3), 2, gap=SHIFT) == [
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 4, 15, 15),
    ]
    assert fires("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3), 1, gap=SKIP) == [utc(2026, 10, 4, 15, 15)]


# --- hourly and every 15 minutes across the transitions ------------------------------------------


@pytest.mark.parametrize(
    ("zone", "after", "overlap", "expected_hours"),
    [
        ("Europe/Berlin", utc(2026, 10, 24, 22, 30), FIRST, [23, 0, 2, 3]),
        ("Europe/Berlin", utc(2026, 10, 24, 22, 30), LAST, [23, 1, 2, 3]),
        ("Europe/Berlin", utc(2026, 10, 24, 22, 30), BOTH, [23, 0, 1, 2]),
        ("America/New_York", utc(2026, 11, 1, 3, 30), FIRST, [4, 5, 7, 8]),
        ("America/New_York", utc(2026, 11, 1, 3, 30), LAST, [4, 6, 7, 8]),
        ("America/New_York", utc(2026, 11, 1, 3, 30), BOTH, [4, 5, 6, 7]),
        ("Australia/Sydney", utc(2026, 4, 4, 13, 30), FIRST, [14, 15, 17, 18]),
        ("Australia/Sydney", utc(2026, 4, 4, 13, 30), LAST, [14, 16, 17, 18]),
        ("Australia/Sydney", utc(2026, 4, 4, 13, 30), BOTH, [14, 15, 16, 17]),
    ],
)
def test_hourly_across_fall_back(zone: str, after: datetime, overlap: OverlapPolicy, expected_hours: list[int]) -> None:
    got = fires("0 * * * *", zone, after, 4, overlap=overlap)
    assert [t.hour for t in got] == expected_hours
    assert all(t.minute == 0 and t - after < timedelta(hours=7) for t in got)


@pytest.mark.parametrize("gap", [SHIFT, SKIP])
@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # The lost hour's slot and the one at the gap's end are the same instant: one fire.
        ("Europe/Berlin", utc(2026, 3, 28, 23, 30), [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]),
        ("America/New_York", utc(2026, 3, 8, 5, 30), [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]),
        (
            "Australia/Sydney",
            utc(2026, 10, 3, 14, 30),
            [utc(2026, 10, 3, 15), utc(2026, 10, 3, 16), utc(2026, 10, 3, 17)],
        ),
    ],
)
def test_hourly_across_spring_forward(zone: str, after: datetime, expected: list[datetime], gap: GapPolicy) -> None:
    assert fires("0 * * * *", zone, after, 3, gap=gap) == expected


def test_hourly_on_lord_howe_keeps_wall_hours_through_half_hour_shifts() -> None:
    # Back: 01:00 +11, then 02:00 +10:30, 90 minutes later (02:00 is not in the repeated 01:30-02:00).
    assert fires("0 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 13, 30), 3) == [
        utc(2026, 4, 4, 14),
        utc(2026, 4, 4, 15, 30),
        utc(2026, 4, 4, 16, 30),
    ]
    # Forward: 01:00 +10:30; 02:00 falls in the 02:00-02:30 gap: shifted to 02:30 +11, or skipped;
    # then 03:00 +11.
    after = utc(2026, 10, 3, 14)
    assert fires("0 * * * *", "Australia/Lord_Howe", after, 3, gap=SHIFT) == [
        utc(2026, 10, 3, 14, 30),
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 16),
    ]
    assert fires("0 * * * *", "Australia/Lord_Howe", after, 3, gap=SKIP) == [
        utc(2026, 10, 3, 14, 30),
        utc(2026, 10, 3, 16),
        utc(2026, 10, 3, 17),
    ]


def quarter_hours(start: datetime, count: int) -> list[datetime]:
    return [start + i * timedelta(minutes=15) for i in range(count)]


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        # The repeated 02:00-03:00 fires once per slot, in the first pass, then nothing until 03:00 CET.
        (FIRST, [utc(2026, 10, 24, 23, 45), *quarter_hours(utc(2026, 10, 25, 0), 4), utc(2026, 10, 25, 2)]),
        (LAST, [utc(2026, 10, 24, 23, 45), *quarter_hours(utc(2026, 10, 25, 1), 4), utc(2026, 10, 25, 2)]),
        (BOTH, [utc(2026, 10, 24, 23, 45), *quarter_hours(utc(2026, 10, 25, 0), 9)]),
    ],
)
def test_every_15_minutes_across_berlin_fall_back(overlap: OverlapPolicy, expected: list[datetime]) -> None:
    assert fires("*/15 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 40), len(expected), overlap=overlap) == expected


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        (FIRST, [utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 7), utc(2026, 11, 1, 7, 15)]),
        (LAST, [utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30)]),
        (BOTH, [utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 15)]),
    ],
)
def test_every_15_minutes_across_new_york_fall_back(overlap: OverlapPolicy, expected: list[datetime]) -> None:
    # From 01:40 EDT, inside the first pass of 01:00-02:00.
    assert fires("*/15 * * * *", "America/New_York", utc(2026, 11, 1, 5, 40), 3, overlap=overlap) == expected


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        (FIRST, [utc(2026, 4, 4, 14, 15), utc(2026, 4, 4, 14, 30), utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15, 30)]),
        (LAST, [utc(2026, 4, 4, 14, 15), utc(2026, 4, 4, 15), utc(2026, 4, 4, 15, 15), utc(2026, 4, 4, 15, 30)]),
        (BOTH, [utc(2026, 4, 4, 14, 15), *quarter_hours(utc(2026, 4, 4, 14, 30), 5)]),
    ],
)
def test_every_15_minutes_across_lord_howe_half_hour_fall_back(
    overlap: OverlapPolicy, expected: list[datetime]
) -> None:
    assert (
        fires("*/15 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 14, 10), len(expected), overlap=overlap)
        == expected
    )


@pytest.mark.parametrize("gap", [SHIFT, SKIP])
def test_every_15_minutes_across_spring_forward(gap: GapPolicy) -> None:
    # 02:00-02:45 CET do not exist; their slots and 03:00 CEST are one fire at 01:00Z.
    assert fires("*/15 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 40), 3, gap=gap) == quarter_hours(
        utc(2026, 3, 29, 0, 45), 3
    )
    # Sydney: 02:xx AEST do not exist.
    assert fires("*/15 * * * *", "Australia/Sydney", utc(2026, 10, 3, 15, 40), 3, gap=gap) == quarter_hours(
        utc(2026, 10, 3, 15, 45), 3
    )
    # Lord Howe: 02:00 and 02:15 do not exist; 02:30 +11 is the gap's end.
    assert fires("*/15 * * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 15), 3, gap=gap) == [
        utc(2026, 10, 3, 15, 15),
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 15, 45),
    ]


def test_several_slots_inside_the_gap_collapse_to_one_fire_or_none() -> None:
    after = utc(2026, 3, 28, 23)
    assert fires("*/15 2 * * *", "Europe/Berlin", after, 2, gap=SHIFT) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)]
    assert fires("*/15 2 * * *", "Europe/Berlin", after, 1, gap=SKIP) == [utc(2026, 3, 30, 0)]
    assert fires("*/30 * 2 * * *", "America/New_York", utc(2026, 3, 8, 6), 2, gap=SHIFT) == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6),
    ]
    assert fires("*/30 * 2 * * *", "America/New_York", utc(2026, 3, 8, 6), 1, gap=SKIP) == [utc(2026, 3, 9, 6)]


@pytest.mark.parametrize(
    ("overlap", "after", "expected"),
    [
        (FIRST, utc(2026, 10, 25, 0, 20), utc(2026, 10, 25, 0, 30)),  # first pass, first-pass slots
        (FIRST, utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 2)),  # second pass: the rest already fired
        (LAST, utc(2026, 10, 25, 0, 50), utc(2026, 10, 25, 1)),  # first pass: 02:00 comes again
        (LAST, utc(2026, 10, 25, 1, 20), utc(2026, 10, 25, 1, 30)),
        (BOTH, utc(2026, 10, 25, 0, 50), utc(2026, 10, 25, 1)),
        (BOTH, utc(2026, 10, 25, 0, 20), utc(2026, 10, 25, 0, 30)),
        (BOTH, utc(2026, 10, 25, 1, 5), utc(2026, 10, 25, 1, 15)),
    ],
)
def test_next_after_from_inside_the_repeated_hour(overlap: OverlapPolicy, after: datetime, expected: datetime) -> None:
    schedule = parse_schedule("*/15 * * * *", timezone="Europe/Berlin", overlap=overlap)
    assert schedule.next_after(after) == expected


def test_after_in_another_offset_means_the_same_instant() -> None:
    schedule = parse_schedule("30 2 * * *", timezone="Europe/Berlin", overlap=LAST)
    berlin = utc(2026, 10, 25, 0, 50).astimezone(ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(berlin) == schedule.next_after(utc(2026, 10, 25, 0, 50)) == utc(2026, 10, 25, 1, 30)


# --- an independent oracle: walk every UTC minute and apply the rules literally ---------------------

ORACLE_CRONS = [
    ("*/15 * * * *", frozenset({0, 15, 30, 45}), frozenset(range(24))),
    ("0 * * * *", frozenset({0}), frozenset(range(24))),
    ("30 2 * * *", frozenset({30}), frozenset({2})),
    ("*/20 1-3 * * *", frozenset({0, 20, 40}), frozenset({1, 2, 3})),
    ("10,45 1,2 * * *", frozenset({10, 45}), frozenset({1, 2})),
]


def oracle(
    minutes: frozenset[int],
    hours: frozenset[int],
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    gap: GapPolicy,
    overlap: OverlapPolicy,
) -> list[datetime]:
    """Fires in [start, end]: an instant fires when its wall time matches (and the policy wants its
    pass of a repeated hour), or, under shift, when it ends a gap holding a matching wall time."""
    found: list[datetime] = []
    instant = start
    while instant <= end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        repeated = wall.replace(tzinfo=zone, fold=1 - local.fold).utcoffset() != local.utcoffset()
        wanted = not repeated or overlap is BOTH or (local.fold == 0) == (overlap is FIRST)
        fire = wanted and wall.minute in minutes and wall.hour in hours
        before = (instant - MINUTE).astimezone(zone).utcoffset()
        assert before is not None
        if gap is SHIFT and before < (local.utcoffset() or before):  # the first instant after a gap
            skipped = instant.replace(tzinfo=None) + before
            while skipped < wall:
                fire = fire or (skipped.minute in minutes and skipped.hour in hours)
                skipped += MINUTE
        if fire:
            found.append(instant)
        instant += MINUTE
    return found


@pytest.mark.parametrize("gap", [SHIFT, SKIP])
@pytest.mark.parametrize("overlap", [FIRST, LAST, BOTH])
@pytest.mark.parametrize(("zone", "transition"), [(zone, instant) for zone, instant, _, _ in TRANSITIONS])
def test_fires_match_a_minute_by_minute_oracle(
    zone: str, transition: datetime, gap: GapPolicy, overlap: OverlapPolicy
) -> None:
    start, end = transition - timedelta(hours=5), transition + timedelta(hours=5)
    for expression, minutes, hours in ORACLE_CRONS:
        schedule = parse_schedule(expression, timezone=zone, gap=gap, overlap=overlap)
        got = [t for t in preview(schedule, after=start - MINUTE, count=100) if t <= end]
        assert got == oracle(minutes, hours, ZoneInfo(zone), start, end, gap, overlap), expression
