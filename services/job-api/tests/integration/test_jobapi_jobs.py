"""Jobs over HTTP: CRUD, versions, ownership, validation problems, outbox messages and manual runs."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractQueue
from jobapi_support import AccountCreds, create_job, job_body, new_account, next_message

from automation_contracts import CloudEvent, JobSpec, validate_event
from automation_testing import wait_until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def job_events(amqp: AbstractChannel) -> AsyncIterator[AbstractQueue]:
    """A queue bound to automation.events with job.* (bound before any job is written)."""
    queue = await amqp.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind("automation.events", routing_key="job.*")
    yield queue


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def runs(amqp: AbstractChannel) -> AbstractQueue:
    """executor.runs, which nothing consumes in these tests."""
    return await amqp.get_queue("executor.runs", ensure=True)


async def next_event(queue: AbstractQueue, event_type: str, job_id: str) -> CloudEvent:
    """The next event of ``event_type`` about ``job_id`` (earlier unrelated ones are skipped)."""
    while True:
        message = await next_message(queue, what=f"{event_type} for {job_id}")
        event = CloudEvent.from_json_bytes(message.body)
        validate_event(event)
        assert message.content_type == "application/cloudevents+json"
        assert message.message_id == event.id
        if event.type == event_type and event.data["job_id"] == job_id:
            return event


POLICY_DEFAULTS: dict[str, Any] = {
    "start_at": None,
    "end_at": None,
    "dst_gap": "shift",
    "dst_overlap": "first",
    "jitter_seconds": 0.0,
    "misfire_policy": "run_once",
    "misfire_cap": 100,
    "starting_deadline_seconds": None,
    "overlap_policy": "allow",
    "max_runs": None,
    "triggers": [],
}


def definition_of(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in {"id", "account_id", "version", "created_at", "updated_at"}}


def spec_of(job: dict[str, Any]) -> JobSpec:
    """The JobSpec a job's messages carry (with its check step once JobSpec has the field)."""
    definition = definition_of(job)
    if "check" not in JobSpec.model_fields:
        assert definition.pop("check") is None
    return JobSpec.model_validate(definition)


async def test_schedule_policies_are_stored_shown_and_carried_in_the_job_spec(
    client: httpx.AsyncClient, account: AccountCreds, job_events: AbstractQueue
) -> None:
    policies = {
        "start_at": "2026-12-01T00:00:00Z",
        "end_at": "2027-01-01T00:00:00Z",
        "dst_gap": "skip",
        "dst_overlap": "both",
        "jitter_seconds": 2.5,
        "misfire_policy": "run_all",
        "misfire_cap": 7,
        "starting_deadline_seconds": 90,
        "overlap_policy": "forbid",
        "max_runs": 3,
        "triggers": [
            {
                "type": "inventory.*",
                "where": [{"path": "data.site", "op": "eq", "value": "fra1"}],
                "max_per_minute": None,
            }
        ],
    }
    body = {
        "name": f"policies-{uuid.uuid4().hex[:6]}",
        "schedule": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}],
        **policies,
    }
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert {k: job[k] for k in policies} == policies
    event = await next_event(job_events, "job.created", job["id"])
    carried = JobSpec.model_validate(event.data["job"])
    assert carried.misfire_policy == "run_all"
    assert carried.max_runs == 3
    assert carried.triggers[0].type == "inventory.*"
    assert carried == spec_of(job)


async def test_limits_are_stored_shown_and_carried_in_the_job_spec(
    client: httpx.AsyncClient, account: AccountCreds, job_events: AbstractQueue
) -> None:
    limits = {"address_space_bytes": 1 << 30, "cpu_seconds": 120, "open_files": 512, "file_size_bytes": 1 << 20}
    resp = await client.post("/api/v1/jobs", json=job_body(limits=limits), headers=account.headers)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["limits"] == limits
    event = await next_event(job_events, "job.created", job["id"])
    carried = JobSpec.model_validate(event.data["job"])
    assert carried.limits is not None
    assert carried.limits.model_dump() == limits
    assert carried == spec_of(job)
    path = f"/api/v1/jobs/{job['id']}"
    put = await client.put(path, json=job_body(name=job["name"], limits={"cpu_seconds": 5}), headers=account.headers)
    assert put.json()["limits"] == {
        "address_space_bytes": None,
        "cpu_seconds": 5,
        "open_files": None,
        "file_size_bytes": None,
    }
    cleared = await client.put(path, json=job_body(name=job["name"]), headers=account.headers)
    assert cleared.json()["limits"] is None
    updated = await next_event(job_events, "job.updated", job["id"])
    assert updated.data["job"]["limits"] == {
        "address_space_bytes": None,
        "cpu_seconds": 5,
        "open_files": None,
        "file_size_bytes": None,
    }


async def test_create_stores_version_1_and_announces_job_created(
    client: httpx.AsyncClient, account: AccountCreds, job_events: AbstractQueue, database_url: str
) -> None:
    body = job_body()
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["account_id"] == account.id
    assert job["version"] == 1
    assert job["created_at"] == job["updated_at"]
    expected = {
        **body,
        "enabled": True,
        "priority": 5,
        "max_concurrency": None,
        "limits": None,
        "check": None,
        **POLICY_DEFAULTS,
    }
    expected["steps"] = [{**s, "timeout_seconds": None} for s in body["steps"]]
    expected["retry_backoff"] = {"base_seconds": 1.0, "max_seconds": 30.0}
    assert definition_of(job) == expected
    assert (await client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers)).json() == job

    event = await next_event(job_events, "job.created", job["id"])
    assert event.source == "/automation/job-api"
    assert event.dataschema == "urn:automation:schema:job.created:v1"
    assert event.data["account_id"] == account.id
    assert event.data["version"] == 1
    assert JobSpec.model_validate(event.data["job"]) == spec_of(job)

    conn = await asyncpg.connect(database_url)
    try:
        versions = await conn.fetch(
            "SELECT version, change, spec FROM job_api.job_versions WHERE job_id = $1", uuid.UUID(job["id"])
        )

        async def outbox_drained() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM job_api.outbox") == 0)

        await wait_until(outbox_drained, what="the relay to remove the published outbox row")
    finally:
        await conn.close()
    assert [(v["version"], v["change"]) for v in versions] == [(1, "created")]
    assert json.loads(versions[0]["spec"]) == event.data["job"]


async def test_put_enable_disable_and_delete_bump_the_version_and_announce_it(
    client: httpx.AsyncClient, account: AccountCreds, job_events: AbstractQueue, database_url: str
) -> None:
    job = await create_job(client, account)
    path = f"/api/v1/jobs/{job['id']}"
    changed = job_body(name=job["name"] + "-renamed", schedule="@every 5m", timezone="UTC", retries=0)
    unattended = await client.put(path, json=changed, headers=account.headers)
    assert (unattended.status_code, unattended.json()["field"]) == (422, "parameters.properties.count.default")
    assert "a job with a schedule runs with its parameters' defaults" in unattended.json()["detail"]
    changed["parameters"]["properties"]["count"]["default"] = 1
    put = await client.put(path, json=changed, headers=account.headers)
    assert put.status_code == 200, put.text
    assert (put.json()["version"], put.json()["name"], put.json()["schedule"]) == (2, changed["name"], "@every 5m")
    assert put.json()["created_at"] == job["created_at"]
    updated = await next_event(job_events, "job.updated", job["id"])
    assert (updated.data["version"], updated.data["job"]["schedule"]) == (2, "@every 5m")

    disabled = await client.post(f"{path}/disable", headers=account.headers)
    assert (disabled.status_code, disabled.json()["enabled"], disabled.json()["version"]) == (200, False, 3)
    event = await next_event(job_events, "job.updated", job["id"])
    assert (event.data["version"], event.data["job"]["enabled"]) == (3, False)
    again = await client.post(f"{path}/disable", headers=account.headers)
    assert (again.json()["enabled"], again.json()["version"]) == (False, 3)  # already disabled: no new version
    enabled = await client.post(f"{path}/enable", headers=account.headers)
    assert (enabled.json()["enabled"], enabled.json()["version"]) == (True, 4)
    assert (await next_event(job_events, "job.updated", job["id"])).data["version"] == 4

    deleted = await client.delete(path, headers=account.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await next_event(job_events, "job.deleted", job["id"])
    assert (gone.data["version"], gone.data["account_id"]) == (5, account.id)
    assert (await client.get(path, headers=account.headers)).status_code == 404
    assert (await client.delete(path, headers=account.headers)).status_code == 404

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT version, change FROM job_api.job_versions WHERE job_id = $1 ORDER BY version", uuid.UUID(job["id"])
        )
    finally:
        await conn.close()
    assert [(r["version"], r["change"]) for r in rows] == [
        (1, "created"),
        (2, "updated"),
        (3, "disabled"),
        (4, "enabled"),
        (5, "deleted"),
    ]


async def test_another_accounts_job_is_a_404(client: httpx.AsyncClient, account: AccountCreds) -> None:
    job = await create_job(client, account)
    stranger = await new_account(client)
    path = f"/api/v1/jobs/{job['id']}"
    for method, suffix, body in [
        ("GET", "", None),
        ("PUT", "", job_body()),
        ("DELETE", "", None),
        ("POST", "/enable", None),
        ("POST", "/disable", None),
        ("POST", "/execute", {"parameters": {"count": 1}}),
    ]:
        resp = await client.request(method, path + suffix, json=body, headers=stranger.headers)
        assert resp.status_code == 404, (method, suffix, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert job["id"] not in {
        j["id"] for j in (await client.get("/api/v1/jobs", headers=stranger.headers)).json()["items"]
    }
    assert (await client.get(path, headers=account.headers)).status_code == 200
    assert (await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=account.headers)).status_code == 404


async def test_names_are_unique_per_account(client: httpx.AsyncClient, account: AccountCreds) -> None:
    first = await create_job(client, account, name="unique-name")
    dup = await client.post("/api/v1/jobs", json=job_body(name="unique-name"), headers=account.headers)
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"
    assert dup.json()["field"] == "name"
    other = await create_job(client, account)
    rename = await client.put(f"/api/v1/jobs/{other['id']}", json=job_body(name="unique-name"), headers=account.headers)
    assert (rename.status_code, rename.json()["field"]) == (409, "name")
    assert (await client.get(f"/api/v1/jobs/{other['id']}", headers=account.headers)).json()["version"] == 1
    elsewhere = await new_account(client)
    assert (await create_job(client, elsewhere, name="unique-name"))["id"] != first["id"]


def _bad(**changes: Any) -> dict[str, Any]:
    return job_body(**changes)


def _bad_step(index: int, **config: Any) -> dict[str, Any]:
    body = job_body()
    body["steps"] = copy.deepcopy(body["steps"])
    body["steps"][index]["config"].update(config)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_bad(steps=[{"name": "x", "type": "teleport", "config": {}}]), "steps.0.type"),
        (_bad_step(1, command="echo hi"), "steps.1.config.command"),
        (_bad_step(1, command=["echo", ""]), "steps.1.config.command.1"),
        (_bad_step(0, url="file:///etc/passwd"), "steps.0.config.url"),
        (_bad_step(0, json={}, body="x"), "steps.0.config.body"),
        (_bad(schedule="every tuesday"), "schedule"),
        (_bad(timezone="Atlantis/Capital"), "timezone"),
        (_bad(priority=10), "priority"),
        (_bad(retries="3"), "retries"),
        (_bad(steps=[]), "steps"),
        (_bad(name=""), "name"),
        (_bad(parameters={"type": "object", "properties": {"n": {"type": "numeric"}}}), "parameters.properties.n.type"),
        (_bad(retry_backoff={"base_seconds": 0, "max_seconds": 1}), "retry_backoff.base_seconds"),
        (_bad(surprise=True), "surprise"),
        (_bad(limits={"cpu_seconds": 0}), "limits.cpu_seconds"),
        (_bad(limits={"address_space_bytes": "1G"}), "limits.address_space_bytes"),
        (_bad(schedule="@hourly"), "parameters.properties.count.default"),
        (_bad_step(1, command="echo '${{ parameters.site }}'", shell=True), "steps.1.config.command"),
        (
            _bad(
                steps=[
                    {
                        "name": "page",
                        "type": "browser",
                        "config": {
                            "actions": [{"type": "evaluate", "name": "n", "expression": "'${{ parameters.site }}'"}]
                        },
                    }
                ]
            ),
            "steps.0.config.actions.0.expression",
        ),
        (
            _bad(
                steps=[
                    {
                        "name": "remote",
                        "type": "ssh.exec",
                        "config": {
                            "host": "h",
                            "username": "u",
                            "password_secret": "PW",
                            "passphrase_secret": "PP",
                            "known_hosts_secret": "K",
                            "command": "id",
                        },
                    }
                ]
            ),
            "steps.0.config.passphrase_secret",
        ),
    ],
)
async def test_bad_definitions_are_problems_naming_the_field(
    client: httpx.AsyncClient, account: AccountCreds, body: dict[str, Any], field: str
) -> None:
    resp = await client.post("/api/v1/jobs", json=body, headers=account.headers)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["field"] == field
    assert problem["status"] == 422
    assert problem["type"].endswith("/invalid-input")
    assert problem["detail"]


async def test_a_body_that_is_not_json_is_a_problem(client: httpx.AsyncClient, account: AccountCreds) -> None:
    resp = await client.post(
        "/api/v1/jobs", content=b"{not json", headers={**account.headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"


async def test_what_postgresql_cannot_keep_is_a_problem_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    # NaN was quietly stored as null; a NUL made the database fail with a 500
    headers = {**account.headers, "Content-Type": "application/json"}
    nan_body = json.dumps(_bad_step(0, method="POST", json={"v": 1}))  # step 0 is an http step
    nan = await client.post("/api/v1/jobs", content=nan_body.replace('"v": 1', '"v": NaN'), headers=headers)
    assert (nan.status_code, nan.json()["field"]) == (422, "steps.0.config.json.v"), nan.text
    nul = await client.post("/api/v1/jobs", json=job_body(name="a\x00b"), headers=account.headers)
    assert (nul.status_code, nul.json()["field"]) == (422, "name"), nul.text
    listed = await client.get("/api/v1/jobs", params={"name": "a\x00b"}, headers=account.headers)
    assert (listed.status_code, listed.json()["field"]) == (422, "name")

    job = await create_job(client, account)
    path = f"/api/v1/jobs/{job['id']}/execute"
    for raw, field in [
        ('{"parameters": {"count": Infinity}}', "parameters.count"),
        ('{"parameters": {"s": "\\u0000"}}', "parameters.s"),
    ]:
        resp = await client.post(path, content=raw, headers=headers)
        assert (resp.status_code, resp.json()["field"]) == (422, field), resp.text
    assert await runs.get(no_ack=True, fail=False) is None


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    made = [await create_job(client, owner, name=f"list-{i}") for i in range(5)]
    await client.post(f"/api/v1/jobs/{made[1]['id']}/disable", headers=owner.headers)
    await client.post(f"/api/v1/jobs/{made[3]['id']}/disable", headers=owner.headers)

    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/jobs", params=params, headers=owner.headers)).json()
        ids.extend(j["id"] for j in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == [j["id"] for j in reversed(made)]  # newest first, every job once

    disabled = (await client.get("/api/v1/jobs", params={"enabled": "false"}, headers=owner.headers)).json()
    assert {j["id"] for j in disabled["items"]} == {made[1]["id"], made[3]["id"]}
    enabled = (await client.get("/api/v1/jobs", params={"enabled": "true"}, headers=owner.headers)).json()
    assert len(enabled["items"]) == 3
    named = (await client.get("/api/v1/jobs", params={"name": "list-2"}, headers=owner.headers)).json()
    assert [j["id"] for j in named["items"]] == [made[2]["id"]]
    bad = await client.get("/api/v1/jobs", params={"enabled": "maybe"}, headers=owner.headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "enabled")


async def test_execute_queues_run_requested_with_the_snapshot_and_defaulted_parameters(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    job = await create_job(client, account)
    resp = await client.post(
        f"/api/v1/jobs/{job['id']}/execute", json={"parameters": {"count": 3}}, headers=account.headers
    )
    assert resp.status_code == 202, resp.text
    execution_id = resp.json()["execution_id"]
    assert resp.headers["location"] == f"/api/v1/executions/{execution_id}"

    message = await next_message(runs, what="run.requested on executor.runs")
    event = CloudEvent.from_json_bytes(message.body)
    validate_event(event)
    assert (event.type, message.routing_key, message.exchange) == (
        "run.requested",
        "run.requested",
        "automation.commands",
    )
    data = event.data
    assert data["execution_id"] == execution_id
    assert (data["job_id"], data["account_id"], data["job_version"]) == (job["id"], account.id, 1)
    assert (data["trigger"], data["attempt"]) == ("manual", 1)
    assert data["parameters"] == {"count": 3, "site": "fra1"}
    assert JobSpec.model_validate(data["job"]) == spec_of(job)

    execution = (await client.get(f"/api/v1/executions/{execution_id}", headers=account.headers)).json()
    assert (execution["status"], execution["trigger"], execution["attempt"]) == ("queued", "manual", 1)
    assert (execution["job_id"], execution["job_version"]) == (job["id"], 1)
    assert execution["parameters"] == {"count": 3, "site": "fra1"}
    assert execution["queued_at"] is not None


async def test_invalid_run_parameters_name_the_parameter_and_queue_nothing(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    job = await create_job(client, account)
    path = f"/api/v1/jobs/{job['id']}/execute"
    for params, field in [
        ({}, "parameters.count"),
        ({"count": "many"}, "parameters.count"),
        ({"count": 1, "site": 7}, "parameters.site"),
    ]:
        resp = await client.post(path, json={"parameters": params}, headers=account.headers)
        assert (resp.status_code, resp.json()["field"]) == (422, field), resp.text
    no_body = await client.post(path, headers=account.headers)
    assert (no_body.status_code, no_body.json()["field"]) == (422, "parameters.count")
    not_object = await client.post(path, json={"parameters": [1]}, headers=account.headers)
    assert (not_object.status_code, not_object.json()["field"]) == (422, "parameters")
    listed = (await client.get("/api/v1/executions", params={"job_id": job["id"]}, headers=account.headers)).json()
    assert listed["items"] == []
    assert await runs.get(no_ack=True, fail=False) is None


async def _run_requests(runs: AbstractQueue, job_ids: set[str]) -> list[str]:
    """The execution ids of the run requests for ``job_ids`` waiting on ``executor.runs`` (taken)."""
    found = []
    while (message := await runs.get(no_ack=True, fail=False)) is not None:
        event = CloudEvent.from_json_bytes(message.body)
        if event.data["job_id"] in job_ids:
            found.append(event.data["execution_id"])
    return found


async def test_an_idempotency_key_runs_the_job_once_per_key(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    job, other_job = await create_job(client, account), await create_job(client, account)
    path = f"/api/v1/jobs/{job['id']}/execute"

    async def execute(key: str | None, count: int = 3, job_path: str = path) -> httpx.Response:
        headers = account.headers | ({"Idempotency-Key": key} if key is not None else {})
        return await client.post(job_path, json={"parameters": {"count": count}}, headers=headers)

    first = await execute("nightly-2026-12-07")
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    again = await execute("nightly-2026-12-07")  # a retry after a timeout, say
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert (again.headers["idempotent-replayed"], again.headers["location"]) == ("true", first.headers["location"])

    burst = await asyncio.gather(*(execute("burst") for _ in range(5)))  # concurrent retries: one run
    assert [r.status_code for r in burst] == [202] * 5, [r.text for r in burst]
    assert len({r.json()["execution_id"] for r in burst}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in burst) == 4

    changed = await execute("nightly-2026-12-07", count=4)
    assert (changed.status_code, changed.json()["field"]) == (422, "Idempotency-Key"), changed.text
    assert first.json()["execution_id"] in changed.json()["detail"]
    elsewhere = await execute("nightly-2026-12-07", job_path=f"/api/v1/jobs/{other_job['id']}/execute")
    assert elsewhere.status_code == 202, "a key is the job's own"
    assert elsewhere.json() != first.json()
    unkeyed = [await execute(None), await execute(None)]
    assert unkeyed[0].json() != unkeyed[1].json(), "without a key, each request is a run"

    for bad in ("", "x" * 256, "tab\tin it"):
        resp = await client.post(
            path, json={"parameters": {"count": 3}}, headers=account.headers | {"Idempotency-Key": bad}
        )
        assert (resp.status_code, resp.json()["field"]) == (422, "Idempotency-Key"), (bad, resp.text)
        assert resp.json()["detail"] == "Idempotency-Key: must be 1 to 255 printable ASCII characters (space to tilde)"

    queued = await _run_requests(runs, {job["id"], other_job["id"]})
    expected = [first, burst[0], elsewhere, *unkeyed]
    assert sorted(queued) == sorted(r.json()["execution_id"] for r in expected), "one run.requested per run"
    listed = (await client.get("/api/v1/executions", params={"job_id": job["id"]}, headers=account.headers)).json()
    assert len(listed["items"]) == 4


async def test_a_disabled_job_still_runs_by_hand(
    client: httpx.AsyncClient, account: AccountCreds, runs: AbstractQueue
) -> None:
    job = await create_job(client, account, parameters={"type": "object", "properties": {"site": {"type": "string"}}})
    await client.post(f"/api/v1/jobs/{job['id']}/disable", headers=account.headers)
    resp = await client.post(f"/api/v1/jobs/{job['id']}/execute", headers=account.headers)
    assert resp.status_code == 202, resp.text
    message = await next_message(runs, what="run.requested for the disabled job")
    event = CloudEvent.from_json_bytes(message.body)
    assert event.data["execution_id"] == resp.json()["execution_id"]
    assert (event.data["job"]["enabled"], event.data["job_version"], event.data["parameters"]) == (False, 2, {})


async def test_the_jobs_gauge_follows_changes(client: httpx.AsyncClient) -> None:
    async def counts() -> tuple[float, float] | None:
        text = (await client.get("/metrics")).text
        values = {
            line.split('"')[1]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("automation_jobs{")
        }
        return (values.get("enabled", -1), values.get("disabled", -1))

    before = await counts()
    assert before is not None
    owner = await new_account(client)
    job = await create_job(client, owner)
    await client.post(f"/api/v1/jobs/{job['id']}/disable", headers=owner.headers)
    expected = (before[0], before[1] + 1)

    async def settled() -> bool:
        return await counts() == expected

    await wait_until(settled, timeout=5, what=f"automation_jobs == {expected}")
