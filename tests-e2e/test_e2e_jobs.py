"""Jobs end to end: scheduled runs, a failing manual run with retries, auth, and a poisoned queue."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import aio_pika
import httpx
import pytest
from e2e_support import Account, Platform

from automation_testing import wait_until

pytestmark = pytest.mark.e2e


async def executions(client: httpx.AsyncClient, account: Account, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/executions", params=params, headers=account.headers)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_every_second_job_runs_repeatedly_and_logs_its_marker(platform: Platform, account: Account) -> None:
    marker = f"tick-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        resp = await client.post(
            "/api/v1/jobs",
            headers=account.headers,
            json={
                "name": f"every-second-{marker}",
                "schedule": "@every 1s",
                "timeout_seconds": 30,
                "steps": [{"name": "say", "type": "shell", "config": {"command": ["echo", marker]}}],
            },
        )
        assert resp.status_code == 201, resp.text
        job_id = resp.json()["id"]

        async def two_succeeded() -> list[dict[str, Any]] | None:
            done = await executions(client, account, job_id=job_id, status="succeeded")
            return done if len(done) >= 2 else None

        try:
            done = await wait_until(two_succeeded, timeout=45, interval=0.5, what="two succeeded scheduled runs")
        finally:
            await client.post(f"/api/v1/jobs/{job_id}/disable", headers=account.headers)
        assert {e["trigger"] for e in done} == {"schedule"}
        assert len({e["scheduled_for"] for e in done}) == len(done)
        # what each run was asked to be reaches the read model through its start
        assert [(e["job_version"], e["parameters"]) for e in done] == [(1, {})] * len(done)
        for e in done:
            assert datetime.fromisoformat(e["queued_at"]) <= datetime.fromisoformat(e["started_at"]), e
        for execution in done[:2]:
            logs = await client.get(f"/api/v1/executions/{execution['id']}/logs", headers=account.headers)
            assert logs.status_code == 200
            assert marker in logs.text


async def test_failing_job_fails_after_its_retries_with_exit_code_and_stderr(
    platform: Platform, account: Account
) -> None:
    marker = f"boom-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        resp = await client.post(
            "/api/v1/jobs",
            headers=account.headers,
            json={
                "name": f"fails-{marker}",
                "retries": 1,
                "retry_backoff": {"base_seconds": 1, "max_seconds": 1},
                "steps": [
                    {
                        "name": "explode",
                        "type": "shell",
                        "config": {"command": ["sh", "-c", f"echo {marker} >&2; exit 7"]},
                    }
                ],
            },
        )
        assert resp.status_code == 201, resp.text
        run = await client.post(f"/api/v1/jobs/{resp.json()['id']}/execute", json={}, headers=account.headers)
        assert run.status_code == 202, run.text
        execution_id = run.json()["execution_id"]

        async def finished() -> dict[str, Any] | None:
            got = await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)
            body: dict[str, Any] = got.json()
            return body if body.get("status") == "failed" and body.get("attempt") == 2 else None

        execution = await wait_until(finished, timeout=45, interval=0.5, what="the run to fail twice")
        assert execution["exit_code"] == 7
        assert execution["trigger"] == "manual"
        assert execution["error"]
        logs = (await client.get(f"/api/v1/executions/{execution_id}/logs", headers=account.headers)).text
        assert logs.count(marker) == 2, logs
        assert "stderr" in logs


@pytest.mark.parametrize("service", ["job-api", "scheduler", "executor", "browser-pool", "event-gateway"])
async def test_every_service_refuses_missing_or_wrong_credentials_and_accepts_the_jwt(
    platform: Platform, account: Account, service: str
) -> None:
    probe = {
        "job-api": "/api/v1/jobs",
        "scheduler": "/api/v1/schedules",
        "executor": "/api/v1/workers/self",
        "browser-pool": "/api/v1/pool",
        "event-gateway": "/api/v1/events",
    }[service]
    async with httpx.AsyncClient(base_url=platform.url(service), timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = await client.get(probe, headers=headers)
            assert resp.status_code == 401
            assert resp.headers["content-type"].startswith("application/problem+json")
        assert (await client.get(probe, headers=account.jwt_headers)).status_code == 200


async def test_poisoned_run_request_is_dead_lettered_and_the_executor_keeps_working(
    platform: Platform, account: Account
) -> None:
    poison = f"this is not a cloudevent {secrets.token_hex(4)}".encode()
    connection = await aio_pika.connect_robust(platform.amqp_url)
    try:
        channel = await connection.channel()
        commands = await channel.get_exchange("automation.commands")
        await commands.publish(aio_pika.Message(poison), routing_key="run.requested")
    finally:
        await connection.close()

    admin = {"Authorization": f"Bearer {platform.admin_token}"}
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:

        async def poisoned() -> dict[str, Any] | None:
            listed = await client.get("/api/v1/dead-letters", params={"original_queue": "executor.runs"}, headers=admin)
            assert listed.status_code == 200, listed.text
            for item in listed.json()["items"]:
                detail = (await client.get(f"/api/v1/dead-letters/{item['id']}", headers=admin)).json()
                if detail["body_text"] == poison.decode():
                    return dict(detail)
            return None

        letter = await wait_until(
            poisoned, timeout=20, interval=0.3, what="the poisoned message among the dead letters"
        )
        assert letter["reason"].startswith("invalid message")
        assert letter["dead_lettered_by"] == "executor"
        assert letter["headers"]["x-original-queue"] == "executor.runs"

    marker = f"alive-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=platform.url("job-api"), timeout=10) as client:
        job = await client.post(
            "/api/v1/jobs",
            headers=account.headers,
            json={
                "name": f"after-poison-{marker}",
                "steps": [{"name": "ok", "type": "shell", "config": {"command": ["true"]}}],
            },
        )
        run = await client.post(f"/api/v1/jobs/{job.json()['id']}/execute", json={}, headers=account.headers)
        execution_id = run.json()["execution_id"]

        async def succeeded() -> bool:
            got = await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)
            return bool(got.json().get("status") == "succeeded")

        await wait_until(succeeded, timeout=30, interval=0.3, what="a run after the poisoned message")
