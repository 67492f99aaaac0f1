"""``AUTOMATION_EXECUTOR_WORKDIR_ROOT`` as ``python -m automation_executor serve`` takes it: a root that
cannot take directories stops the replica at start-up; a usable one is named in ``executor_started``
with the filesystem it is on, and runs make and remove their directories there."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automation_executor.testing import (
    ExecutorHarness,
    free_port,
    harness_settings,
    run_request_data,
    serve_environment,
    start_replica,
)

pytestmark = pytest.mark.integration


def _environment(database_url: str, amqp_url: str, root: str, port: int) -> dict[str, str]:
    return serve_environment(
        database_url,
        amqp_url,
        port=port,
        AUTOMATION_EXECUTOR_WORKDIR_ROOT=root,
        AUTOMATION_LOG_LEVEL="INFO",
    )


def _entries(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def test_a_root_that_cannot_take_directories_stops_the_replica(
    database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    out = tmp_path / "out.log"
    port = free_port()
    with out.open("wb") as sink, pytest.raises(AssertionError, match=r"the replica exited with [1-9]"):
        await start_replica(_environment(database_url, amqp_url, str(missing), port), port, output=sink)
    text = out.read_text()
    assert (
        f"WorkdirRootError: AUTOMATION_EXECUTOR_WORKDIR_ROOT: cannot create working directories in {missing}: "
        "No such file or directory"
    ) in text
    assert any(line.get("event") == "Application startup failed. Exiting." for line in _log_lines(out))
    assert not any(line.get("event") == "executor_started" for line in _log_lines(out))


@pytest.fixture
def shm_root() -> Iterator[Path]:
    """A root on Linux's /dev/shm (tmpfs), as a memory-backed volume gives one in a container."""
    root = Path("/dev/shm") / f"automation-test-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_root_on_tmpfs_is_named_with_its_filesystem_at_start(
    database_url: str, amqp_url: str, tmp_path: Path, shm_root: Path
) -> None:
    port = free_port()
    out = tmp_path / "out.log"
    with out.open("wb") as sink:
        process = await start_replica(_environment(database_url, amqp_url, str(shm_root), port), port, output=sink)
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    (started,) = [line for line in _log_lines(out) if line.get("event") == "executor_started"]
    assert started["workdir_root"] == str(shm_root)
    assert started["workdir_filesystem"] == "tmpfs"
    assert _entries(shm_root) == [], "the start-up check leaves nothing behind"


async def test_runs_make_and_remove_their_directories_under_the_root(
    database_url: str, amqp_url: str, shm_root: Path
) -> None:
    settings = harness_settings(database_url, amqp_url, executor_workdir_root=str(shm_root))
    where = {"name": "where", "type": "shell", "config": {"command": ["pwd"]}}
    noop = {"name": "noop", "type": "python", "config": {"handler": "automation_executor.examples.handlers:noop"}}
    async with ExecutorHarness(settings) as harness:
        assert harness.client is not None
        worker = (await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)).json()
        assert (worker["workdir_root"], worker["workdir_filesystem"]) == (str(shm_root), "tmpfs")
        # Commands only (run by the command server, no child), then a child's run (a python step first).
        for steps in ([where], [noop, where]):
            event = await harness.request_run(run_request_data(steps))
            execution_id = event.data["execution_id"]
            outcome = await harness.wait_outcome(execution_id)
            assert outcome.type == "execution.succeeded", outcome.data
            (line,) = [e["text"] for e in harness.log_entries(execution_id) if e["stream"] == "stdout"]
            directory = Path(line)
            assert directory.parent == shm_root
            assert directory.name.startswith(f"automation-{execution_id}-1-")
            assert directory.name not in _entries(shm_root)
    assert _entries(shm_root) == []
