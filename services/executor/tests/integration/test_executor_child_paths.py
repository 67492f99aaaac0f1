"""The child's two ways of running a job report the same (real processes and fork server).

A job whose steps and check are all shell and python steps runs without an event loop (the blocking
path); with ``AUTOMATION_EXECUTOR_CHILD_FAST_PATH=false``, or with any other kind of step, it runs on
asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from automation_executor.bridge import RecordingServices
from automation_executor.child.blocking import LineReader
from automation_executor.child.emitter import Emitter
from automation_executor.child.main import SPEC_LINE_LIMIT, prepare, run_without_loop, runs_blocking
from automation_executor.domain.outcome import RunOutcome
from automation_executor.domain.protocol import ChildSpec

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_child_jobs import EXAMPLES, EXPECTED, JOBS, asked_of, run_shared_job, without_ids
from executor_steps_support import browser_answer, forked_children

pytestmark = pytest.mark.integration


async def _both(tmp_path: Path, job: dict[str, Any], *, forked: bool) -> list[tuple[RunOutcome, list[Any]]]:
    results = []
    asked = []
    for fast in (True, False):
        services = RecordingServices(browser_answer)
        async with forked_children() if forked else contextlib.nullcontext(), asyncio.timeout(20):
            results.append(await run_shared_job(tmp_path, job, services, {"executor_child_fast_path": fast}))
        asked.append(asked_of(services))
    assert asked[0] == asked[1]
    return results


@pytest.mark.parametrize("forked", [False, True], ids=["spawned", "forked"])
@pytest.mark.parametrize("name", list(JOBS))
async def test_the_blocking_path_and_the_asyncio_path_report_the_same(tmp_path: Path, name: str, forked: bool) -> None:
    (fast, fast_lines), (loop, loop_lines) = await _both(tmp_path, JOBS[name], forked=forked)
    assert without_ids(fast, fast_lines) == without_ids(loop, loop_lines)
    assert "tok-0123456789" not in repr(fast) + repr(fast_lines)
    EXPECTED[name](fast, fast_lines)  # and equal to what it should be, not merely equal


@pytest.mark.parametrize(
    "step",
    [
        {"name": "s", "type": "shell", "config": {"command": ["echo", "${{ secrets.X }}"]}},
        {"name": "p", "type": "python", "config": {"handler": f"{EXAMPLES}:use_secret", "args": {"token_secret": "X"}}},
    ],
    ids=["shell", "python"],
)
def test_the_blocking_path_makes_no_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: Any) -> None:
    """Its saving is the event loop it does not make: nothing on it may make one behind its back."""
    monkeypatch.chdir(tmp_path)
    spec = {"execution_id": "e", "attempt": 1, "steps": [step], "parameters": {}, "path": os.environ["PATH"]}
    spec_r, spec_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(spec_w, json.dumps(spec).encode() + b"\n")
    protocol: list[dict[str, Any]] = []

    def executor() -> None:  # answers every secret request, as the executor's bridge does
        with os.fdopen(out_r, "rb") as lines:
            for line in lines:
                protocol.append(message := json.loads(line))
                if message["type"] == "request":
                    reply = {"type": "reply", "id": message["id"], "ok": True, "result": "sekret"}
                    os.write(spec_w, json.dumps(reply).encode() + b"\n")

    answering = threading.Thread(target=executor)
    answering.start()
    emitter = Emitter(out_w)
    replies = LineReader(spec_r, limit=SPEC_LINE_LIMIT)
    child_spec = prepare(replies.readline(), emitter)
    assert isinstance(child_spec, ChildSpec)
    assert runs_blocking(child_spec)
    policy = asyncio.get_event_loop_policy()
    monkeypatch.setattr(policy, "new_event_loop", lambda: pytest.fail("the blocking path made an event loop"))
    try:
        code = run_without_loop(child_spec, emitter, replies)
    finally:
        os.close(out_w)
        answering.join(5)
        os.close(spec_w)
        os.close(spec_r)
    result = protocol[-1]
    assert result["type"] == "result"
    assert result["status"] == "succeeded", result["error"]
    assert code == 0
    assert "sekret" not in json.dumps(result)
