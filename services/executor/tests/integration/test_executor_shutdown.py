"""Graceful shutdown: finish what fits in the grace period, hand back the rest, rerun it as the same attempt."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from automation_executor.testing import ExecutorHarness, harness_settings, run_request_data
from automation_testing import wait_until

pytestmark = pytest.mark.integration


def _running(marker: str) -> bool:
    """Whether a live (non-zombie) process has ``marker`` in its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat[stat.rindex(")") + 2] != "Z":
            return True
    return False


async def test_shutdown_drains_then_a_new_replica_reruns_the_handed_back_attempt(
    database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, amqp_url, shutdown_grace_seconds=1.5, executor_kill_grace_seconds=1)
    first_run = tmp_path / "first-run"
    long_marker, short_marker = f"long-{uuid.uuid4().hex}", f"short-{uuid.uuid4().hex}"
    script = f"if [ -e {first_run} ]; then echo second run; else touch {first_run}; sleep 30; fi"
    long = run_request_data(
        [{"name": "long", "type": "shell", "config": {"command": ["sh", "-c", script, long_marker]}}]
    )
    short = run_request_data(
        [{"name": "short", "type": "shell", "config": {"command": ["sh", "-c", "sleep 0.3; echo done", short_marker]}}]
    )
    harness = ExecutorHarness(settings)
    await harness.start()
    try:
        assert harness.client is not None
        first_worker = (await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)).json()["id"]
        await harness.request_run(long)
        await harness.request_run(short)
        for marker in (long_marker, short_marker):

            async def is_running(marker: str = marker) -> bool:
                return _running(marker)

            await wait_until(is_running, interval=0.01, what=f"{marker} running")

        await harness.stop()  # the SIGTERM path: drain within 1.5 s, then kill and hand back

        assert not _running(long_marker), "the long run's process survived the shutdown"
        await harness.start()  # another replica (a new worker id) gets the handed-back request
        short_outcome = await harness.wait_outcome(short["execution_id"])
        assert short_outcome.type == "execution.succeeded"
        assert short_outcome.data["result"]["short"]["stdout_tail"] == "done\n"
        outcome = await harness.wait_outcome(long["execution_id"])
        assert outcome.type == "execution.succeeded", outcome.data
        assert outcome.data["result"]["long"]["stdout_tail"] == "second run\n"
        started = harness.of(long["execution_id"], "execution.started")
        assert len(started) == 2
        assert len({e.id for e in started}) == 2
        assert started[0].data["worker"] == first_worker
        assert started[1].data["worker"] != first_worker
        assert len(harness.of(long["execution_id"], "execution.succeeded")) == 1
        seqs = sorted(e.data["seq"] for e in harness.of(long["execution_id"], "execution.log"))
        assert len(seqs) == len(set(seqs))
        assert "was handed back by" in harness.log_text(long["execution_id"])
        assert harness.client is not None
        page = await harness.client.get(
            "/api/v1/attempts", params={"execution_id": long["execution_id"]}, headers=harness.admin_headers
        )
        [attempt] = page.json()["items"]
        assert attempt["status"] == "succeeded"
        assert attempt["lost_count"] == 0, "a handed-back attempt is not lost"
        assert attempt["run_count"] == 2
        assert attempt["lost_at"] is None
        assert attempt["worker_id"] == started[1].data["worker"]
        assert uuid.UUID(attempt["execution_id"]) == uuid.UUID(long["execution_id"])
    finally:
        await harness.close()
