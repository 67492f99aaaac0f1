"""Stopping a command started through asyncio, against the child watcher (real processes)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from automation_executor.processes import spawn, stop

pytestmark = pytest.mark.integration


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]


async def test_stopping_a_command_that_has_just_exited_keeps_its_exit_code(caplog: pytest.LogCaptureFixture) -> None:
    """The command exits (here: on its own; in a run: on the group's SIGTERM) before the step stops it,
    and before asyncio's watcher has reaped it. Stopping it must not reap it behind the watcher's back."""
    if sys.version_info < (3, 12):  # what the executor child uses on 3.11 (3.12 watches through pidfds itself)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    try:
        gate_r, gate_w = os.pipe()  # the command exits only once told, while the event loop does not run
        try:
            spawned = await spawn(["sh", "-c", "read _; exit 3"], stdin=gate_r)
        finally:
            os.close(gate_r)
        os.write(gate_w, b"go\n")
        os.close(gate_w)
        deadline = time.monotonic() + 5
        while _state(spawned.pid) != "Z":  # exited; the loop does not run, so nobody has reaped it yet
            assert time.monotonic() < deadline
            time.sleep(0.005)  # noqa: ASYNC251 - the event loop must not run here
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            code = await asyncio.wait_for(stop(spawned, grace=1.0, group=False), 5)
            spawned.close()
        assert code == 3, "the command's own exit code, not the watcher's 255"
        assert not [r for r in caplog.records if "already read" in r.getMessage()]
    finally:
        if sys.version_info < (3, 12):
            asyncio.set_child_watcher(None)
