"""The fork server's warm-up run (``child.main.prepare_fork``): a real no-op python job, run in a process
of its own here (it changes process state), that leaves nothing behind, writes nothing and imports no
handler module of the runs (an ``examples`` module held by the server would change what runs see)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

PROBE = textwrap.dedent(
    """
    import json, logging, signal, sys, threading
    from automation_executor.child import main
    from automation_executor.child import warmup
    from automation_executor.forkserver import server

    main.WARM_UP_HANDLER = sys.argv[1]
    called = []
    warmup.noop = lambda ctx: called.append(ctx.step)  # the module's own declared name, observed
    state = lambda: (signal.getsignal(signal.SIGTERM), sys.stdout, sys.stderr, sorted(logging.root.manager.loggerDict))
    before = state()
    if sys.argv[2] == "server":  # as the fork server preloads, with the python step's module
        server.preload(["automation_executor.child.python_step"])
        code = "not returned"
    else:
        code = main.prepare_fork()
    print(json.dumps({
        "code": code,
        "called": called,
        "threads": threading.active_count(),
        "restored": state() == before,
        "examples": sorted(m for m in sys.modules if m.startswith("automation_executor.examples")),
    }))
    """
)


def warm_up(handler: str, via: str = "direct") -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, handler, via], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"the warm-up wrote to the server's stdout: {done.stdout!r}"
    return json.loads(lines[0]), done.stderr


def test_the_warm_up_runs_the_no_op_job_through_the_child_and_leaves_nothing_behind() -> None:
    result, stderr = warm_up("automation_executor.child.warmup:noop")
    assert result == {"code": 0, "called": ["warm-up"], "threads": 1, "restored": True, "examples": []}
    assert stderr == ""


def test_a_warm_up_that_fails_says_so_and_leaves_nothing_behind() -> None:
    result, stderr = warm_up("automation_executor.child.warmup:not_declared")
    assert result == {"code": 1, "called": [], "threads": 1, "restored": True, "examples": []}
    assert "forkserver: the warm-up run ended with 1" in stderr


def test_the_fork_server_runs_the_warm_up_when_it_preloads_the_child() -> None:
    result, stderr = warm_up("automation_executor.child.warmup:noop", via="server")
    assert result == {"code": "not returned", "called": ["warm-up"], "threads": 1, "restored": True, "examples": []}
    assert stderr == ""
