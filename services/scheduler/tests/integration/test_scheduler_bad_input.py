"""Bad input of every kind is a 422 problem naming the field: instants outside the platform's range,
cursors that decode to NUL or such instants, and bodies that cannot be read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from automation_scheduler.testing import Bus, Jobs, Tables
from automation_testing import wait_until
from automation_testing.badinput import EDGE, HIGH, LOW, assert_problem, b64

pytestmark = pytest.mark.integration


async def _hourly_job(bus: Bus, jobs: Jobs, tables: Tables) -> uuid.UUID:
    job_id = uuid.uuid4()
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    await bus.publish(jobs.changed(job_id, schedule="@every 1h", changed_at=anchor))
    await wait_until(lambda: tables.schedule(job_id), what="the schedule row")
    return job_id


@pytest.mark.parametrize("field", ["from", "start_at", "end_at"])
@pytest.mark.parametrize("value", [LOW, HIGH, EDGE])
async def test_preview_instants_outside_the_range_are_422s(
    client: httpx.AsyncClient, admin: dict[str, str], field: str, value: str
) -> None:
    resp = await client.post("/api/v1/schedules/preview", headers=admin, json={"schedule": "@hourly", field: value})
    assert "once converted to UTC" in assert_problem(resp, field)["detail"]


@pytest.mark.parametrize("zone", ["Etc/GMT+12", "Pacific/Kiritimati"])
async def test_preview_from_the_earliest_instant_finds_fires_in_any_zone(
    client: httpx.AsyncClient, admin: dict[str, str], zone: str
) -> None:
    body = {"schedule": "@hourly", "timezone": zone, "from": "0001-01-02T00:00:00Z", "count": 2}
    resp = await client.post("/api/v1/schedules/preview", headers=admin, json=body)
    assert resp.status_code == 200, resp.text
    first, second = (datetime.fromisoformat(text) for text in resp.json()["fire_times"])  # zones' local mean time
    assert datetime(1, 1, 2, tzinfo=UTC) < first < second <= first + timedelta(hours=1)


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"from": EDGE, "to": "0001-01-01T05:00:00Z"}, "from"),
        ({"from": LOW, "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": HIGH}, "to"),
    ],
)
async def test_a_backfill_window_outside_the_range_is_a_422(
    bus: Bus,
    jobs: Jobs,
    tables: Tables,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    window: dict[str, str],
    field: str,
) -> None:
    job_id = await _hourly_job(bus, jobs, tables)
    resp = await client.post(f"/api/v1/jobs/{job_id}/backfill", headers=admin, json=window)
    assert "once converted to UTC" in assert_problem(resp, field)["detail"]


@pytest.mark.parametrize("listing", ["fires", "event-fires"])
@pytest.mark.parametrize(
    "raw",
    [
        f"{LOW}|x".encode(),
        f"{HIGH}|x".encode(),
        f"{EDGE}|x".encode(),
        b"2026-01-01T00:00:00+00:00|\x00",  # PostgreSQL refuses NUL in text
        b"2026-01-01T00:00:00+00:00\x00|x",
        b"[" * 5000,
    ],
    ids=["low", "high", "edge", "nul-key", "nul-time", "brackets"],
)
async def test_a_fires_cursor_that_is_not_ours_is_a_422_naming_cursor(
    bus: Bus, jobs: Jobs, tables: Tables, client: httpx.AsyncClient, admin: dict[str, str], listing: str, raw: bytes
) -> None:
    job_id = await _hourly_job(bus, jobs, tables)
    resp = await client.get(f"/api/v1/schedules/{job_id}/{listing}", headers=admin, params={"cursor": b64(raw)})
    assert_problem(resp, "cursor")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"schedule":"bad\xff"}', "body: not valid UTF-8: invalid start byte at byte 16 (0xff)"),
        (b'{"schedule": "@hourly", "count": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body: JSON nested too deeply"),
        (b'{"schedule": "@hourly", "count": ' + b"9" * 5000 + b"}", "body: an integer has too many digits"),
        (b'{"schedule": "@hourly",\n "count": }', "body: JSON syntax error at line 2, column 11: Expecting value"),
    ],
    ids=["not-utf8", "too-deep", "long-integer", "syntax"],
)
async def test_a_body_that_cannot_be_read_is_a_422_naming_body(
    client: httpx.AsyncClient, admin: dict[str, str], body: bytes, detail: str
) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    resp = await client.post("/api/v1/schedules/preview", headers=headers, content=body)
    problem = assert_problem(resp, "body")
    assert problem["detail"].startswith(detail), problem
