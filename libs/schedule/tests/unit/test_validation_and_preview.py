"""validate_schedule (relative to now) and preview's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automation_schedule import MAX_PREVIEW, ScheduleError, parse_schedule, preview, validate_schedule


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


NOW = utc(2026, 3, 1)


@pytest.mark.parametrize(
    "expression",
    ["0 2 * * 1-5", "@every 90s", "@daily", "0 0 29 2 *", "0 0 L 2 *", "0 0 30 2 MON", "2026-12-01T09:00:00+01:00"],
)
def test_usable_schedules_pass(expression: str) -> None:
    validate_schedule(expression, timezone="Europe/Berlin", now=NOW)


def test_no_schedule_is_fine_but_its_zone_is_still_checked() -> None:
    validate_schedule(None, now=NOW)
    validate_schedule(None, timezone="Australia/Lord_Howe")
    with pytest.raises(ScheduleError) as caught:
        validate_schedule(None, timezone="Nowhere/Special")
    assert caught.value.field == "timezone"


def test_validate_reports_parse_errors_with_their_reason() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("0 0 30 2 *", now=NOW)
    assert (caught.value.field, caught.value.reason) == ("schedule", "day-of-month 30 never occurs in February")


def test_a_one_off_in_the_past_is_rejected() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("2026-02-01T00:00:00Z", now=NOW)
    assert caught.value.field == "schedule"
    assert caught.value.reason == (
        "one-off time 2026-02-01T00:00:00+00:00 is in the past (now is 2026-03-01T00:00:00+00:00)"
    )


def test_a_one_off_outside_its_window_is_rejected() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("2026-06-01T00:00:00Z", end_at=utc(2026, 5, 1), now=NOW)
    assert caught.value.field == "end_at"
    assert "is before the one-off time 2026-06-01T00:00:00+00:00" in caught.value.reason
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("2026-06-01T00:00:00Z", start_at=utc(2026, 7, 1), now=NOW)
    assert caught.value.field == "start_at"


def test_end_at_before_the_first_fire_is_rejected() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("@yearly", end_at=utc(2026, 6, 1), now=NOW)
    assert caught.value.field == "end_at"
    assert caught.value.reason == (
        "end_at 2026-06-01T00:00:00+00:00 is before the first fire time 2027-01-01T00:00:00+00:00"
    )
    with pytest.raises(ScheduleError, match="is before the first fire time"):
        validate_schedule("@hourly", end_at=utc(2026, 1, 1), now=NOW)  # the window is already over


def test_a_schedule_that_does_not_fire_within_five_years_is_rejected() -> None:
    # A fifth Monday in February needs a leap year starting February on a Monday: next in 2044.
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("0 0 * 2 MON#5", now=NOW)
    assert (caught.value.field, caught.value.reason) == (
        "schedule",
        "schedule never fires: no fire time in the next 5 years",
    )
    assert parse_schedule("0 0 * 2 MON#5").next_after(NOW) == utc(2044, 2, 29)


def test_the_horizon_counts_from_a_later_start_at() -> None:
    validate_schedule("@daily", start_at=utc(2040, 1, 1), now=NOW)


def test_now_must_be_aware() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_schedule("@daily", now=datetime(2026, 1, 1))
    assert caught.value.field == "now"


def test_validate_without_now_uses_the_clock() -> None:
    validate_schedule("@every 1h")
    in_a_minute = datetime.now(UTC) + timedelta(minutes=1)
    validate_schedule(in_a_minute.isoformat())
    with pytest.raises(ScheduleError, match="is in the past"):
        validate_schedule((in_a_minute - timedelta(hours=1)).isoformat())


@pytest.mark.parametrize("count", [0, -1, MAX_PREVIEW + 1, True, 2.0])
def test_preview_count_must_be_between_1_and_1000(count: int) -> None:
    with pytest.raises(ScheduleError) as caught:
        preview(parse_schedule("@hourly"), after=NOW, count=count)
    assert caught.value.field == "count"
    assert "count must be a whole number from 1 to 1000" in caught.value.reason


def test_preview_returns_count_fires_or_fewer_when_the_schedule_ends() -> None:
    hourly = parse_schedule("@hourly")
    assert preview(hourly, after=NOW, count=1) == [utc(2026, 3, 1, 1)]
    many = preview(hourly, after=NOW, count=MAX_PREVIEW)
    assert len(many) == MAX_PREVIEW
    assert many[-1] == NOW + timedelta(hours=MAX_PREVIEW)
    assert preview(parse_schedule("2026-04-01T00:00:00Z"), after=NOW, count=5) == [utc(2026, 4, 1)]
