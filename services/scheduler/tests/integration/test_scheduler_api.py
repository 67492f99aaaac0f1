"""The HTTP API: auth, account scoping, schedules and fires listings, preview."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from automation_core.auth import issue_token
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.testing import Bus, Jobs
from automation_testing import wait_until

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def bearer(settings: SchedulerSettings, account_id: uuid.UUID) -> dict[str, str]:
    token, _ = issue_token(settings, account_id=account_id)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/schedules"),
        ("GET", f"/api/v1/schedules/{uuid.uuid4()}"),
        ("GET", f"/api/v1/schedules/{uuid.uuid4()}/fires"),
        ("POST", "/api/v1/schedules/preview"),
        ("GET", f"/api/v1/schedules/{uuid.uuid4()}/event-fires"),
        ("POST", f"/api/v1/jobs/{uuid.uuid4()}/backfill"),
        ("GET", f"/api/v1/backfills/{uuid.uuid4()}"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
async def test_every_route_needs_a_valid_credential(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = await client.request(method, path, headers=headers, json={"schedule": "@daily"})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == PROBLEM


async def test_health_and_metrics_need_no_credential(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "fire_loop": "ok"}
    assert (await client.get("/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    for name in (
        "automation_scheduler_fires_total",
        "automation_scheduler_fire_lateness_seconds_bucket",
        "automation_scheduler_due_backlog",
        "automation_scheduler_schedules",
        "automation_scheduler_dropped_fires_total",
        "automation_scheduler_running_executions",
        "automation_scheduler_cancels_total",
    ):
        assert name in metrics


async def test_accounts_see_their_own_schedules_and_the_admin_sees_all(
    client: httpx.AsyncClient, bus: Bus, settings: SchedulerSettings, admin: dict[str, str]
) -> None:
    alice, bob = Jobs(), Jobs()
    alice_jobs = sorted(uuid.uuid4() for _ in range(3))
    bob_job = uuid.uuid4()
    for job_id in alice_jobs:
        await bus.publish(alice.changed(job_id, schedule="0 9 * * 1-5", timezone="Europe/Berlin"))
    await bus.publish(bob.changed(bob_job, schedule=None))

    async def all_visible() -> list[str] | None:
        resp = await client.get("/api/v1/schedules", headers=admin, params={"limit": 200})
        ids = [item["job_id"] for item in resp.json()["items"]]
        return ids if {str(j) for j in [*alice_jobs, bob_job]} <= set(ids) else None

    await wait_until(all_visible, what="the four schedules")

    as_alice = bearer(settings, alice.account_id)
    page1 = (await client.get("/api/v1/schedules", headers=as_alice, params={"limit": 2})).json()
    assert [i["job_id"] for i in page1["items"]] == [str(j) for j in alice_jobs[:2]]
    assert page1["next_cursor"]
    page2 = (
        await client.get("/api/v1/schedules", headers=as_alice, params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    assert [i["job_id"] for i in page2["items"]] == [str(alice_jobs[2])]
    assert page2["next_cursor"] is None

    one = (await client.get(f"/api/v1/schedules/{alice_jobs[0]}", headers=as_alice)).json()
    assert one["state"] == "active"
    assert one["schedule"] == "0 9 * * 1-5"
    assert one["timezone"] == "Europe/Berlin"
    next_local = datetime.fromisoformat(one["next_fire_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_local.hour, next_local.minute, next_local.weekday() < 5) == (9, 0, True)

    hidden = await client.get(f"/api/v1/schedules/{bob_job}", headers=as_alice)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == PROBLEM
    assert (await client.get(f"/api/v1/schedules/{bob_job}/fires", headers=as_alice)).status_code == 404
    mine = (await client.get(f"/api/v1/schedules/{bob_job}", headers=bearer(settings, bob.account_id))).json()
    assert mine["state"] == "no_schedule"
    assert mine["next_fire_at"] is None
    only_none = (await client.get("/api/v1/schedules", headers=admin, params={"state": "no_schedule"})).json()
    assert {i["state"] for i in only_none["items"]} == {"no_schedule"}

    bad = await client.get("/api/v1/schedules", headers=admin, params={"cursor": "!!"})
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")


async def test_fires_are_listed_newest_first(client: httpx.AsyncClient, bus: Bus, admin: dict[str, str]) -> None:
    jobs = Jobs()
    job_id = uuid.uuid4()
    await bus.publish(jobs.changed(job_id, schedule="@every 1s"))

    async def three_fires() -> list[dict[str, str]] | None:
        resp = await client.get(f"/api/v1/schedules/{job_id}/fires", headers=admin)
        items: list[dict[str, str]] = resp.json()["items"] if resp.status_code == 200 else []
        return items if len(items) >= 3 else None

    items = await wait_until(three_fires, timeout=5, what="three fires")
    times = [item["nominal_time"] for item in items]
    assert times == sorted(times, reverse=True)
    assert all(item["outcome"] == "fired" and item["execution_id"] for item in items)
    page = (await client.get(f"/api/v1/schedules/{job_id}/fires", headers=admin, params={"limit": 1})).json()
    rest = (
        await client.get(
            f"/api/v1/schedules/{job_id}/fires", headers=admin, params={"limit": 1, "cursor": page["next_cursor"]}
        )
    ).json()
    assert rest["items"][0]["nominal_time"] < page["items"][0]["nominal_time"]
    got = (await client.get(f"/api/v1/schedules/{job_id}", headers=admin)).json()
    assert got["last_fire_at"] is not None


async def test_preview_uses_the_schedule_library(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    body = {"schedule": "30 2 * * *", "timezone": "Europe/Berlin", "from": "2026-03-28T00:00:00Z", "count": 3}
    resp = await client.post("/api/v1/schedules/preview", headers=admin, json=body)
    assert resp.status_code == 200, resp.text
    times = [datetime.fromisoformat(t) for t in resp.json()["fire_times"]]
    # 2026-03-29 is the spring-forward day in Berlin: 02:30 does not exist and fires at the first valid instant
    assert times == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    every = await client.post(
        "/api/v1/schedules/preview",
        headers=admin,
        json={"schedule": "@every 90s", "from": "2026-01-01T00:00:00Z", "count": 2},
    )
    assert every.json()["fire_times"] == ["2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"]
    default = await client.post("/api/v1/schedules/preview", headers=admin, json={"schedule": "@hourly"})
    assert len(default.json()["fire_times"]) == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "0 0 30 2 *"}, "schedule"),
        ({"schedule": "@every soon"}, "schedule"),
        ({"schedule": "@daily", "timezone": "Mars/Olympus"}, "timezone"),
        ({"schedule": "@daily", "count": 0}, "count"),
        ({"schedule": "@daily", "count": 1001}, "count"),
        ({"schedule": "@daily", "from": "2026-01-01T00:00:00"}, "from"),
    ],
)
async def test_preview_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, object], field: str
) -> None:
    resp = await client.post("/api/v1/schedules/preview", headers=admin, json=body)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["field"] == field
    assert problem["detail"]
