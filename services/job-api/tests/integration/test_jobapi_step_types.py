"""Every step type through the API: stored as given, carried in the messages; check steps; data stays data."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractQueue
from jobapi_support import AccountCreds, next_message

from automation_contracts import CloudEvent, validate_event

pytestmark = pytest.mark.integration
INJECTION = "; rm -rf / #"
SSH = {"host": "db1", "username": "deploy", "private_key_secret": "DEPLOY_KEY", "known_hosts_secret": "KNOWN_HOSTS"}
WINRM = {"endpoint": "https://win1:5986/wsman", "username": "svc", "password_secret": "WIN_PASSWORD"}
STEPS: list[dict[str, Any]] = [
    {"name": "sh", "type": "shell", "config": {"command": ["echo", "${{ parameters.target }}"]}},
    {
        "name": "py",
        "type": "python",
        "config": {"handler": "inventory.tasks:sync", "args": {"t": "${{ parameters.target }}"}},
    },
    {"name": "web", "type": "http", "config": {"url": "https://x/${{ parameters.target }}", "max_body_bytes": 1024}},
    {"name": "ssh", "type": "ssh.exec", "config": {**SSH, "command": "echo ${{ parameters.target }}"}},
    {
        "name": "up",
        "type": "sftp.upload",
        "config": {**SSH, "content": "${{ parameters.target }}", "remote_path": "/tmp/a"},
    },
    {"name": "down", "type": "sftp.download", "config": {**SSH, "remote_path": "/tmp/a", "local_path": "a"}},
    {"name": "ps", "type": "winrm.exec", "config": {**WINRM, "script": "Write-Output '${{ parameters.target }}'"}},
    {"name": "cp", "type": "winrm.copy", "config": {**WINRM, "content": "x", "remote_path": "C:\\a.txt"}},
    {
        "name": "page",
        "type": "browser",
        "config": {
            "actions": [
                {"type": "goto", "url": "https://x/"},
                {"type": "fill", "selector": "#q", "value": "${{ parameters.target }}"},
            ]
        },
    },
    {
        "name": "tell",
        "type": "event.emit",
        "config": {"type": "inventory.synced", "data": {"t": "${{ parameters.target }}"}},
    },
]
PARAMETERS = {"type": "object", "properties": {"target": {"type": "string", "default": INJECTION}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def runs(amqp: AbstractChannel) -> AbstractQueue:
    """executor.runs, which nothing consumes in these tests."""
    return await amqp.get_queue("executor.runs", ensure=True)


async def _run_requested(runs: AbstractQueue, execution_id: str) -> CloudEvent:
    while True:
        event = CloudEvent.from_json_bytes((await next_message(runs, what=f"run.requested {execution_id}")).body)
        if event.data["execution_id"] == execution_id:
            validate_event(event)
            return event


async def test_every_step_type_is_stored_as_given_and_runs_with_shell_metacharacters_as_data(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    body = {
        "name": f"all-{uuid.uuid4().hex[:6]}",
        "parameters": PARAMETERS,
        "steps": STEPS,
        "priority": 9,
        "max_concurrency": 2,
    }
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert [(s["name"], s["type"], s["config"]) for s in job["steps"]] == [
        (s["name"], s["type"], s["config"]) for s in STEPS
    ]
    assert (job["priority"], job["max_concurrency"], job["check"]) == (9, 2, None)

    resp = await client.post(
        f"/api/v1/jobs/{job['id']}/execute",
        json={"parameters": {"target": f"$(reboot) `id` {INJECTION}"}},
        headers=account.headers,
    )
    assert resp.status_code == 202, resp.text
    event = await _run_requested(runs, resp.json()["execution_id"])
    assert event.data["parameters"] == {"target": f"$(reboot) `id` {INJECTION}"}
    assert [s["config"] for s in event.data["job"]["steps"]] == [s["config"] for s in STEPS]

    defaulted = await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)
    assert (await _run_requested(runs, defaulted.json()["execution_id"])).data["parameters"] == {"target": INJECTION}


async def test_a_check_step_is_validated_stored_and_versioned(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue, database_url: str
) -> None:
    check = {
        "name": "changed",
        "type": "http",
        "config": {"url": "https://inventory/changed?site=${{ parameters.target }}"},
    }
    steps = [{"name": "sync", "type": "shell", "config": {"command": ["sync", "${{ check.payload.since }}"]}}]
    body = {"name": f"check-{uuid.uuid4().hex[:6]}", "parameters": PARAMETERS, "check": check, "steps": steps}
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["check"] == {**check, "timeout_seconds": None}
    assert (await client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers)).json()["check"] == job["check"]

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT check_step FROM job_api.job_versions WHERE job_id = $1", uuid.UUID(job["id"])
        )
    finally:
        await conn.close()
    assert json.loads(stored)["name"] == "changed"

    resp = await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)
    assert resp.status_code == 202, resp.text
    event = await _run_requested(runs, resp.json()["execution_id"])
    assert event.data["job"]["check"]["name"] == "changed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"steps": [{"name": "s", "type": "shell", "config": {"command": ["echo", "${{ parameters.nope }}"]}}]},
            "steps.0.config.command.1",
        ),
        (
            {
                "steps": [
                    {
                        "name": "s",
                        "type": "ssh.exec",
                        "config": {**SSH, "command": "id", "private_key_secret": "-----BEGIN"},
                    }
                ]
            },
            "steps.0.config.private_key_secret",
        ),
        (
            {"check": {"name": "c", "type": "shell", "config": {"command": ["x", "${{ steps.s.output }}"]}}},
            "check.config.command.1",
        ),
        (
            {"steps": [{"name": "s", "type": "event.emit", "config": {"type": "a.b", "data": "${{ secrets.TOKEN }}"}}]},
            "steps.0.config.data",
        ),
        (  # browser-pool would refuse it at run time: refused when the job is defined
            {
                "steps": [
                    {"name": "s", "type": "browser", "config": {"actions": [{"type": "goto", "url": "file:///x"}]}}
                ]
            },
            "steps.0.config.actions.0.url",
        ),
    ],
)
async def test_refusals_name_the_field(
    client: httpx.AsyncClient, account: AccountCreds, change: dict[str, Any], field: str
) -> None:
    body = {"name": "refused", "parameters": PARAMETERS, "steps": [STEPS[0]], **change}
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
