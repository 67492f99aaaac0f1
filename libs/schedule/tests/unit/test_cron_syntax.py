"""Cron syntax: macros, 5 and 6 fields, names, L/W/#, the OR rule, and the errors with their reasons."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime

import pytest
from croniter import croniter

from automation_schedule import Schedule, ScheduleError, parse_schedule, preview


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(expression: str, after: datetime, count: int, **kwargs: object) -> list[datetime]:
    return preview(parse_schedule(expression, **kwargs), after=after, count=count)  # type: ignore[arg-type]


JAN_1_2026 = utc(2026, 1, 1)  # a Thursday


@pytest.mark.parametrize(
    ("macro", "cron", "first", "second"),
    [
        ("@hourly", "0 * * * *", utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)),
        ("@daily", "0 0 * * *", utc(2026, 1, 2), utc(2026, 1, 3)),
        ("@midnight", "0 0 * * *", utc(2026, 1, 2), utc(2026, 1, 3)),
        ("@weekly", "0 0 * * 0", utc(2026, 1, 4), utc(2026, 1, 11)),  # Sundays
        ("@monthly", "0 0 1 * *", utc(2026, 2, 1), utc(2026, 3, 1)),
        ("@yearly", "0 0 1 1 *", utc(2027, 1, 1), utc(2028, 1, 1)),
        ("@annually", "0 0 1 1 *", utc(2027, 1, 1), utc(2028, 1, 1)),
    ],
)
def test_macros_are_their_cron_equivalents(macro: str, cron: str, first: datetime, second: datetime) -> None:
    schedule = parse_schedule(macro)
    assert (schedule.kind, schedule.cron, schedule.expression) == ("cron", cron, macro)
    assert preview(schedule, after=JAN_1_2026, count=2) == [first, second]
    assert preview(parse_schedule(macro.upper()), after=JAN_1_2026, count=2) == [first, second]


def test_five_fields_fire_on_weekdays_at_the_given_time() -> None:
    assert fires("30 9 * * 1-5", JAN_1_2026, 3) == [
        utc(2026, 1, 1, 9, 30),
        utc(2026, 1, 2, 9, 30),
        utc(2026, 1, 5, 9, 30),
    ]


def test_six_fields_take_a_leading_seconds_field() -> None:
    assert fires("15 30 9 * * *", JAN_1_2026, 2) == [utc(2026, 1, 1, 9, 30, 15), utc(2026, 1, 2, 9, 30, 15)]
    assert fires("*/20 * * * * *", utc(2026, 1, 1, 0, 0, 5), 3) == [
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 40),
        utc(2026, 1, 1, 0, 1, 0),
    ]
    schedule = parse_schedule("0 0 12 * * *")
    assert schedule.next_after(utc(2026, 1, 1, 11, 59, 59, 999_999)) == utc(2026, 1, 1, 12)


def test_lists_ranges_and_steps() -> None:
    assert fires("5,35 8-9 * * *", JAN_1_2026, 5) == [
        utc(2026, 1, 1, 8, 5),
        utc(2026, 1, 1, 8, 35),
        utc(2026, 1, 1, 9, 5),
        utc(2026, 1, 1, 9, 35),
        utc(2026, 1, 2, 8, 5),
    ]
    assert fires("10-40/15 * * * *", JAN_1_2026, 3) == [
        utc(2026, 1, 1, 0, 10),
        utc(2026, 1, 1, 0, 25),
        utc(2026, 1, 1, 0, 40),
    ]
    assert fires("50/5 * * * *", JAN_1_2026, 3) == [
        utc(2026, 1, 1, 0, 50),
        utc(2026, 1, 1, 0, 55),
        utc(2026, 1, 1, 1, 50),
    ]


def test_an_equal_range_is_one_value_not_the_whole_field() -> None:
    # croniter alone reads 5-5 as every minute; the normal form keeps it one value.
    assert fires("5-5 * * * *", JAN_1_2026, 2) == [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 1, 5)]


def test_a_range_that_ends_before_it_starts_wraps_around() -> None:
    assert [t.hour for t in fires("0 22-2 * * *", JAN_1_2026, 6)] == [1, 2, 22, 23, 0, 1]


def test_month_and_day_names_in_any_case() -> None:
    expected = fires("0 6 * 1,7 1-5", JAN_1_2026, 40)
    assert fires("0 6 * JAN,jul Mon-FRI", JAN_1_2026, 40) == expected
    assert fires("0 0 * * sat-sun", JAN_1_2026, 3) == [utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 10)]


def test_day_of_week_seven_and_zero_are_sunday() -> None:
    sundays = [utc(2026, 1, 4), utc(2026, 1, 11)]
    assert fires("0 0 * * 7", JAN_1_2026, 2) == sundays
    assert fires("0 0 * * 0", JAN_1_2026, 2) == sundays
    assert [t.day for t in fires("0 0 * * 5-7", JAN_1_2026, 3)] == [2, 3, 4]  # Fri, Sat, Sun


def test_question_mark_is_a_wildcard_in_the_day_fields() -> None:
    assert fires("0 0 ? * MON", JAN_1_2026, 2) == fires("0 0 * * MON", JAN_1_2026, 2)


def test_l_in_day_of_month_is_the_last_day() -> None:
    assert fires("0 0 L * *", utc(2027, 12, 15), 4) == [
        utc(2027, 12, 31),
        utc(2028, 1, 31),
        utc(2028, 2, 29),
        utc(2028, 3, 31),
    ]
    assert fires("0 0 1,L * *", JAN_1_2026, 3) == [utc(2026, 1, 31), utc(2026, 2, 1), utc(2026, 2, 28)]


def test_w_is_the_nearest_weekday_within_the_month() -> None:
    # 15 Feb 2026 is a Sunday -> Monday 16th; 15 Aug 2026 a Saturday -> Friday 14th.
    assert fires("0 0 15W 2,8 *", JAN_1_2026, 2) == [utc(2026, 2, 16), utc(2026, 8, 14)]
    # 1 Aug 2026 is a Saturday: the nearest weekday inside August is Monday the 3rd.
    assert fires("0 0 W1 8 *", JAN_1_2026, 1) == [utc(2026, 8, 3)]


def test_hash_is_the_nth_weekday_of_the_month() -> None:
    assert fires("0 0 * * FRI#3", JAN_1_2026, 3) == [utc(2026, 1, 16), utc(2026, 2, 20), utc(2026, 3, 20)]
    assert fires("0 0 * * 1#5", JAN_1_2026, 2) == [utc(2026, 3, 30), utc(2026, 6, 29)]


@pytest.mark.parametrize("last_friday", ["5L", "L5", "FRIL", "friL"])
def test_last_weekday_of_the_month(last_friday: str) -> None:
    assert fires(f"0 0 * * {last_friday}", JAN_1_2026, 3) == [utc(2026, 1, 30), utc(2026, 2, 27), utc(2026, 3, 27)]


def test_both_day_fields_restricted_match_either_the_or_rule() -> None:
    # The 1st of the month OR any Monday.
    expected = [utc(2026, 1, 5), utc(2026, 1, 12), utc(2026, 1, 19), utc(2026, 1, 26), utc(2026, 2, 1), utc(2026, 2, 2)]
    assert fires("0 0 1 * MON", JAN_1_2026, 6) == expected


def test_the_or_rule_is_croniters_default() -> None:
    reference = croniter("0 0 13 * 5", datetime(2026, 1, 1))
    theirs = [reference.get_next(datetime).replace(tzinfo=UTC) for _ in range(12)]
    assert fires("0 0 13 * FRI", JAN_1_2026, 12) == theirs


def test_the_or_rule_also_applies_to_hash_and_w_forms() -> None:
    # croniter alone intersects these (and finds nothing for 1 + FRI#3); here they are a union.
    assert fires("0 0 1 * FRI#3", JAN_1_2026, 3) == [utc(2026, 1, 16), utc(2026, 2, 1), utc(2026, 2, 20)]
    assert fires("0 0 15W * MON", utc(2026, 2, 1), 3) == [utc(2026, 2, 2), utc(2026, 2, 9), utc(2026, 2, 16)]


def test_one_restricted_day_field_is_an_and() -> None:
    assert all(t.weekday() == 0 for t in fires("0 0 * * MON", JAN_1_2026, 10))
    assert all(t.day == 1 for t in fires("0 0 1 * *", JAN_1_2026, 10))
    assert all(t.day == 1 for t in fires("0 0 1 * ?", JAN_1_2026, 10))


def test_impossible_day_of_month_is_fine_when_day_of_week_also_matches() -> None:
    assert fires("0 0 30 2 MON", JAN_1_2026, 2) == [utc(2026, 2, 2), utc(2026, 2, 9)]


def test_february_29_fires_in_leap_years() -> None:
    assert fires("0 0 29 2 *", JAN_1_2026, 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


def test_blank_separated_fields_are_normalised() -> None:
    schedule = parse_schedule("  0   2\t* * 1-5  ")
    assert schedule.expression == "0   2\t* * 1-5"
    assert schedule.cron == "0 2 * * 1-5"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "needs 5 fields (minute hour day-of-month month day-of-week) or 6"),
        ("0 0 0 * * * 2026", "has 7"),
        ("61 * * * *", "minute value 61 is out of range 0-59"),
        ("60 * * * * *", "second value 60 is out of range 0-59"),
        ("0 24 * * *", "hour value 24 is out of range 0-23"),
        ("0 0 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * 0 *", "month value 0 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("0 0 * FOO *", "month value 'FOO' is not a number or a name JAN-DEC"),
        ("0 0 * * MONDAY", "day-of-week value 'MONDAY' is not a number or a name SUN-SAT"),
        ("0 0 * JAN-FOO *", "month value 'FOO' in 'JAN-FOO' is not a number"),
        ("0 0 * * MON-FOO", "day-of-week value 'FOO' in 'MON-FOO' is not a number"),
        ("*/0 * * * *", "minute step 0 in '*/0' is out of range 1-60"),
        ("*/61 * * * *", "minute step 61 in '*/61' is out of range 1-60"),
        ("0 0/x * * *", "hour step 'x' in '0/x' is not a whole number"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("H * * * *", "minute value 'H' is not a number"),
        ("R * * * *", "minute value 'R' is not a number"),
        ("? * * * *", "'?' is only allowed in the day-of-month and day-of-week fields"),
        ("0 0 * * 1#6", "the number after # must be 1-5"),
        ("0 0 * * 1#0", "the number after # must be 1-5"),
        ("0 0 * * 1,2#3", "mixes plain days with # or L items"),
        ("0 0 * * L", "day-of-week L needs a day"),
        ("0 0 1,15W * *", "(nearest weekday) must be the field's only item"),
        ("0 0 32W * *", "day-of-month value 32 in '32W' is out of range 1-31"),
        ("0 0 LW * *", "LW (last weekday of the month) is not supported"),
        ("0 0 30 2 *", "day-of-month 30 never occurs in February"),
        ("0 0 31 4 *", "day-of-month 31 never occurs in April"),
        ("0 0 31 APR,JUN,SEP,NOV *", "day-of-month 31 never occurs in April, June, September or November"),
        ("0 0 30,31 2 *", "day-of-month 30, 31 never occurs in February"),
        ("@reboot", "unknown schedule macro '@reboot'"),
        ("@every", "@every needs a Go duration"),
        ("", "schedule is empty"),
        ("   ", "schedule is empty"),
    ],
)
def test_invalid_expressions_say_why(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    assert reason in caught.value.reason
    assert caught.value.field == "schedule"
    assert str(caught.value) == caught.value.reason


def test_a_schedule_is_an_immutable_value() -> None:
    first = parse_schedule("0 2 * * *", timezone="Europe/Berlin")
    second = parse_schedule("0 2 * * *", timezone="Europe/Berlin")
    assert first == second
    assert hash(first) == hash(second)
    assert first != parse_schedule("0 2 * * *", timezone="UTC")
    with pytest.raises(AttributeError):
        first.timezone = "UTC"  # type: ignore[misc]
    assert isinstance(first, Schedule)
    assert "_engine" not in repr(first)


@pytest.mark.parametrize("expression", ["0 9 1 * MON", "@every 90s", "2026-12-01T09:00:00+01:00", "*/5 * * * * *"])
def test_a_schedule_pickles_and_copies_as_an_equal_working_value(expression: str) -> None:
    schedule = parse_schedule(expression, timezone="Europe/Berlin", start_at=utc(2026, 2, 1), overlap="both")  # type: ignore[arg-type]
    for clone in (pickle.loads(pickle.dumps(schedule)), copy.deepcopy(schedule), copy.copy(schedule)):
        assert clone == schedule
        assert clone.next_after(JAN_1_2026) == schedule.next_after(JAN_1_2026)
