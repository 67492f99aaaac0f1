"""The executor end to end: run requests in over AMQP, events out, attempts over HTTP (real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from automation_contracts import validate_event
from automation_core.auth import issue_token
from automation_db import schema_drift
from automation_executor.db.tables import metadata
from automation_executor.testing import ExecutorHarness, harness_settings, run_request_data
from automation_messaging import REASON_HEADER
from automation_testing import wait_until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(database_url: str, amqp_url: str) -> AsyncIterator[ExecutorHarness]:
    settings = harness_settings(database_url, amqp_url, executor_kill_grace_seconds=2, shutdown_grace_seconds=5)
    async with ExecutorHarness(settings) as h:
        yield h


def _process_groups() -> dict[int, int]:
    """pid -> process group of every live (non-zombie) process."""
    groups: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            groups[int(entry.name)] = int(fields[2])
    return groups


async def test_schema_has_no_drift(harness: ExecutorHarness, database_url: str) -> None:
    assert await schema_drift(database_url, metadata) == []


async def test_api_requires_credentials(harness: ExecutorHarness) -> None:
    assert harness.client is not None
    assert (await harness.client.get("/api/v1/workers/self")).status_code == 401
    assert (await harness.client.get("/api/v1/attempts")).status_code == 401
    bad = await harness.client.get("/api/v1/workers/self", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.headers["content-type"].startswith("application/problem+json")
    admin = await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)
    assert admin.status_code == 200
    body = admin.json()
    assert body["concurrency"] == 4
    assert body["id"]
    assert body["draining"] is False
    token, _ = issue_token(harness.settings, account_id=uuid.uuid4())
    jwt = await harness.client.get("/api/v1/workers/self", headers={"Authorization": f"Bearer {token}"})
    assert jwt.status_code == 200
    missing = await harness.client.get("/api/v1/attempts", headers=harness.admin_headers)
    assert missing.status_code == 422
    assert missing.json()["field"] == "execution_id"


async def test_shell_echo_succeeds_with_its_marker_logged(harness: ExecutorHarness) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    data = run_request_data([{"name": "hello", "type": "shell", "config": {"command": ["echo", marker]}}])
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.succeeded"
    validate_event(outcome)
    assert outcome.data["exit_code"] == 0
    assert outcome.data["result"]["hello"] == {"exit_code": 0, "stdout_tail": f"{marker}\n"}
    started = harness.of(data["execution_id"], "execution.started")
    assert len(started) == 1
    validate_event(started[0])
    assert started[0].data["trigger"] == "manual"
    await wait_until(harness.logged(data["execution_id"], marker), what="marker in logs")
    entries = harness.log_entries(data["execution_id"])
    assert {"stream": "stdout", "step": "hello", "text": marker} in [
        {k: e[k] for k in ("stream", "step", "text")} for e in entries
    ]
    seqs = [e.data["seq"] for e in harness.of(data["execution_id"], "execution.log")]
    assert sorted(seqs) == list(range(len(seqs)))
    for batch in harness.of(data["execution_id"], "execution.log"):
        validate_event(batch)
    assert harness.client is not None
    page = await harness.client.get(
        "/api/v1/attempts", params={"execution_id": data["execution_id"]}, headers=harness.admin_headers
    )
    assert page.status_code == 200
    [attempt] = page.json()["items"]
    assert attempt["status"] == "succeeded"
    assert attempt["exit_code"] == 0
    assert attempt["finished_at"] is not None
    assert attempt["lost_count"] == 0


async def test_failing_job_is_retried_then_fails(harness: ExecutorHarness) -> None:
    data = run_request_data(
        [{"name": "boom", "type": "shell", "config": {"command": ["sh", "-c", "echo oops >&2; exit 3"]}}],
        retries=2,
    )
    await harness.request_run(data)
    failures = await harness.wait_for(data["execution_id"], "execution.failed", count=3, timeout=20)
    by_attempt = {e.data["attempt"]: e.data for e in failures}
    assert sorted(by_attempt) == [1, 2, 3]
    assert [by_attempt[a]["will_retry"] for a in (1, 2, 3)] == [True, True, False]
    assert by_attempt[1]["next_attempt_at"] is not None
    assert by_attempt[3]["next_attempt_at"] is None
    for failure in by_attempt.values():
        assert failure["exit_code"] == 3
        assert "exit code 3" in failure["error"]
    for event in failures:
        validate_event(event)
    for attempt in (1, 2, 3):
        await wait_until(
            harness.logged(data["execution_id"], "oops", attempt=attempt), what=f"stderr of attempt {attempt}"
        )
    stderr = [e for e in harness.log_entries(data["execution_id"], attempt=1) if e["stream"] == "stderr"]
    assert stderr[0]["text"] == "oops"
    assert harness.client is not None
    page = await harness.client.get(
        "/api/v1/attempts", params={"execution_id": data["execution_id"], "limit": 2}, headers=harness.admin_headers
    )
    first = page.json()
    assert [a["attempt"] for a in first["items"]] == [1, 2]
    assert first["next_cursor"]
    rest = await harness.client.get(
        "/api/v1/attempts",
        params={"execution_id": data["execution_id"], "cursor": first["next_cursor"]},
        headers=harness.admin_headers,
    )
    assert [(a["attempt"], a["status"], a["will_retry"]) for a in rest.json()["items"]] == [(3, "failed", False)]
    assert rest.json()["next_cursor"] is None


def _group_running(marker: str) -> int | None:
    """The process group of the live process whose command line holds ``marker``."""
    for pid, group in _process_groups().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            return group
    return None


async def test_timeout_kills_the_whole_process_group(harness: ExecutorHarness) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    data = run_request_data(
        [{"name": "slow", "type": "shell", "config": {"command": ["sh", "-c", "sleep 30; true", marker]}}],
        timeout_seconds=1,
    )
    await harness.request_run(data)

    async def step_running() -> int | None:
        return _group_running(marker)

    group = await wait_until(step_running, interval=0.01, what="the step's process")
    assert group != os.getpgrp()
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.timed_out"
    validate_event(outcome)
    assert outcome.data["will_retry"] is False
    assert "timed out after 1s" in outcome.data["error"]

    async def group_gone() -> bool:
        return group not in _process_groups().values()

    await wait_until(group_gone, timeout=5, what="the process group to be gone")
    assert "SIGTERM" in harness.log_text(data["execution_id"])


async def test_http_step_output_feeds_later_steps(harness: ExecutorHarness) -> None:
    seen: list[dict[str, str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.strip().split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines)
        seen.append({"line": request_line, "token": headers.get("x-token", headers.get("X-Token", ""))})
        body = json.dumps({"count": 3, "items": [{"id": "a1"}]}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        data = run_request_data(
            [
                {
                    "name": "fetch",
                    "type": "http",
                    "config": {
                        "url": f"http://127.0.0.1:{port}/sites/${{{{ parameters.site }}}}",
                        "headers": {"X-Token": "${{ parameters.token }}"},
                        "expected_status": [200],
                    },
                },
                {
                    "name": "capped",
                    "type": "http",
                    "config": {"url": f"http://127.0.0.1:{port}/capped", "max_body_bytes": 5, "timeout_seconds": 5},
                },
                {
                    "name": "report",
                    "type": "shell",
                    "config": {"command": ["echo", "count=${{ steps.fetch.output.body.count }}"]},
                },
            ],
            parameters={"site": "fra1/../admin?x=1", "token": "; rm -rf / #"},
        )
        await harness.request_run(data)
        outcome = await harness.wait_outcome(data["execution_id"])
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.type == "execution.succeeded", outcome.data
    result = outcome.data["result"]
    assert result["fetch"]["status"] == 200
    assert result["fetch"]["body"] == {"count": 3, "items": [{"id": "a1"}]}
    assert result["fetch"]["headers"]["content-type"] == "application/json"
    assert result["report"]["stdout_tail"] == "count=3\n"
    assert outcome.data["exit_code"] == 0
    assert result["capped"]["body"] == '{"cou'  # cut at 5 bytes, so kept as text
    assert seen[0] == {"line": "GET /sites/fra1%2F..%2Fadmin%3Fx%3D1 HTTP/1.1", "token": "; rm -rf / #"}
    assert seen[1]["line"] == "GET /capped HTTP/1.1"


async def test_injection_attempts_stay_literal(harness: ExecutorHarness, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    evil = {"a": "; rm -rf / #", "b": f"$(touch {target})", "c": f"`touch {target}`; touch {target}"}
    data = run_request_data(
        [
            {
                "name": "argv",
                "type": "shell",
                "config": {"command": ["echo", "${{ parameters.a }}", "${{ parameters.b }}"]},
            },
            {
                "name": "script",
                "type": "shell",
                "config": {"command": "echo ${{ parameters.b }} ${{ parameters.c }} | cat", "shell": True},
            },
            {
                "name": "env",
                "type": "shell",
                "config": {"command": ["sh", "-c", 'echo "$V"'], "env": {"V": "${{ parameters.b }}"}},
            },
        ],
        parameters=evil,
    )
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.succeeded", outcome.data
    result = outcome.data["result"]
    assert result["argv"]["stdout_tail"] == f"{evil['a']} {evil['b']}\n"
    assert result["script"]["stdout_tail"] == f"{evil['b']} {evil['c']}\n"
    assert result["env"]["stdout_tail"] == f"{evil['b']}\n"
    assert not target.exists()


async def test_invalid_step_config_fails_without_retry(harness: ExecutorHarness) -> None:
    data = run_request_data(
        [
            {"name": "bad", "type": "shell", "config": {"command": "echo hi"}},
            {"name": "py", "type": "python", "config": {}},
        ],
        retries=3,
    )
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.failed"
    assert outcome.data["will_retry"] is False
    assert "steps.0.config" in outcome.data["error"]
    assert 'needs "shell": true' in outcome.data["error"]


async def test_duplicate_of_finished_attempt_runs_nothing(harness: ExecutorHarness, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    data = run_request_data(
        [{"name": "count", "type": "shell", "config": {"command": ["sh", "-c", f"echo run >> {counter}"]}}]
    )
    await harness.request_run(data)
    await harness.wait_outcome(data["execution_id"])
    events_before = len(harness.of(data["execution_id"]))
    await harness.request_run(data)  # same execution and attempt, as a redelivery or a duplicate publish would be
    sentinel = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}])
    await harness.request_run(sentinel)
    await harness.wait_outcome(sentinel["execution_id"])
    await wait_until(lambda: _runs_queue_empty(harness), what="executor.runs drained")
    assert counter.read_text() == "run\n"
    assert len(harness.of(data["execution_id"])) == events_before
    assert harness.client is not None
    page = await harness.client.get(
        "/api/v1/attempts", params={"execution_id": data["execution_id"]}, headers=harness.admin_headers
    )
    assert len(page.json()["items"]) == 1


async def _runs_queue_empty(harness: ExecutorHarness) -> bool:
    queue = await harness.channel.declare_queue("executor.runs", passive=True)
    return queue.declaration_result.message_count == 0


async def test_attempts_of_another_account_are_not_shown(harness: ExecutorHarness) -> None:
    owner = uuid.uuid4()
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], account_id=owner)
    await harness.request_run(data)
    await harness.wait_outcome(data["execution_id"])
    assert harness.client is not None
    params = {"execution_id": data["execution_id"]}
    mine, _ = issue_token(harness.settings, account_id=owner)
    other, _ = issue_token(harness.settings, account_id=uuid.uuid4())
    own = await harness.client.get("/api/v1/attempts", params=params, headers={"Authorization": f"Bearer {mine}"})
    foreign = await harness.client.get("/api/v1/attempts", params=params, headers={"Authorization": f"Bearer {other}"})
    assert len(own.json()["items"]) == 1
    assert foreign.json()["items"] == []
    bad_cursor = await harness.client.get(
        "/api/v1/attempts", params={**params, "cursor": "zzz"}, headers=harness.admin_headers
    )
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["field"] == "cursor"


async def test_malformed_and_invalid_requests_are_dead_lettered(harness: ExecutorHarness) -> None:
    await harness.dead_letters()  # start from an empty dead-letter queue
    await harness.publish_body(b"this is not json")
    invalid = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}])
    del invalid["job"]
    await harness.request_run(invalid)
    valid = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["echo", "after"]}}])
    await harness.request_run(valid)
    outcome = await harness.wait_outcome(valid["execution_id"])
    assert outcome.type == "execution.succeeded"
    dead: list[Any] = []

    async def two_dead() -> bool:
        dead.extend(await harness.dead_letters())
        return len(dead) >= 2

    await wait_until(two_dead, what="two dead letters")
    reasons = {m.body: str(m.headers[REASON_HEADER]) for m in dead}
    assert "invalid message" in reasons[b"this is not json"]
    [invalid_reason] = [r for body, r in reasons.items() if body != b"this is not json"]
    assert "job" in invalid_reason
    assert harness.of(invalid["execution_id"]) == []


async def test_a_20_mb_http_body_reaches_the_outcome_event_through_the_outbox_and_the_broker(
    harness: ExecutorHarness,
) -> None:
    """``max_body_bytes`` allows 64 MiB: such an output crosses the child's protocol, the outbox (PostgreSQL)
    and RabbitMQ in the outcome event (the old 8 MiB protocol line failed the run)."""
    size = 20_000_000

    class Huge(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b"y" * size)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        data = run_request_data([{"name": "big", "type": "http", "config": {"url": url, "max_body_bytes": 64 << 20}}])
        await harness.request_run(data)
        outcome = await harness.wait_outcome(data["execution_id"], timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.type == "execution.succeeded", outcome.data
    assert isinstance(outcome.data, dict)
    assert outcome.data["result"]["big"]["body"] == "y" * size
