"""Which limits the command server holds itself, which a command must still set, and how it is started.

The limits are this test process's own (read and compared, never changed), and the one command started
is a real ``true``.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

from automation_executor.forkserver.server import Zygote, address_space_in_use
from automation_executor.rlimits import (
    HELD_ADDRESS_SPACE_HEADROOM,
    MIN_HELD_OPEN_FILES,
    holdable,
    unmet,
)

MIB = 1 << 20


def _current(name: str) -> tuple[str, int, int]:
    soft, hard = resource.getrlimit(getattr(resource, name))
    return (name, soft, hard)


def test_a_server_holds_what_it_can_live_under_and_never_cpu_seconds() -> None:
    plan = [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NOFILE", 1024, 1024),
        ("RLIMIT_FSIZE", MIB, MIB),
        ("RLIMIT_AS", 4096 * MIB, 4096 * MIB),
        ("RLIMIT_CPU", 3600, 3601),
    ]
    assert holdable(plan, address_space_in_use=100 * MIB) == plan[:4]
    unlimited = [("RLIMIT_NOFILE", resource.RLIM_INFINITY, resource.RLIM_INFINITY), ("RLIMIT_AS", 0, -1)]
    assert holdable(unlimited[:1], address_space_in_use=None) == unlimited[:1]
    assert holdable(unlimited[1:], address_space_in_use=None) == [], "a soft limit of 0 bytes is a limit"


def test_too_few_open_files_or_too_little_address_space_is_left_to_each_command() -> None:
    small = MIN_HELD_OPEN_FILES - 1
    in_use = 200 * MIB
    tight = in_use + HELD_ADDRESS_SPACE_HEADROOM - 1
    plan = [("RLIMIT_NOFILE", small, small), ("RLIMIT_AS", tight, tight)]
    assert holdable(plan, address_space_in_use=in_use) == []
    roomy = in_use + HELD_ADDRESS_SPACE_HEADROOM
    assert holdable([("RLIMIT_AS", roomy, roomy)], address_space_in_use=in_use) == [("RLIMIT_AS", roomy, roomy)]
    assert holdable([("RLIMIT_AS", 1 << 40, 1 << 40)], address_space_in_use=None) == [], "unknown size: not held"


def test_a_limit_already_in_force_is_met_and_any_other_is_not() -> None:
    nofile = _current("RLIMIT_NOFILE")
    core = _current("RLIMIT_CORE")
    assert unmet([nofile, core]) == []
    lower = ("RLIMIT_NOFILE", 16, 16)
    assert unmet([nofile, lower]) == [lower]


def test_a_limit_above_the_hard_one_is_met_by_the_hard_one() -> None:
    """As :func:`automation_executor.rlimits.lower` sets it: an unprivileged process cannot raise a hard
    limit. Checked in a process of its own, whose open-files limit is first lowered to 100."""
    code = (
        "import resource\n"
        "from automation_executor.rlimits import target, unmet\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "print(target(resource.RLIMIT_NOFILE, 5000, 5000), unmet([('RLIMIT_NOFILE', 5000, 5000)]),"
        " unmet([('RLIMIT_NOFILE', 50, 5000)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(100, 100) [] [('RLIMIT_NOFILE', 50, 5000)]"


def test_an_unknown_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="RLIMIT_NOPE"):
        unmet([("RLIMIT_NOPE", 1, 1)])
    with pytest.raises(ValueError, match="environ"):
        unmet([("environ", 1, 1)])


def test_the_size_of_this_process_is_read() -> None:
    size = address_space_in_use()
    assert size is not None
    assert size > 10 * MIB


def test_a_command_whose_limits_are_all_in_force_is_spawned_alone(tmp_path: Path) -> None:
    """Nothing unmet: ``posix_spawn`` of the command itself, with neither ``prlimit`` nor a fork."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = Zygote(theirs)
    zygote.prlimit = None  # as where util-linux is not installed

    def no_fork(*_: Any) -> NoReturn:
        raise AssertionError("forked a child to set limits that were in force already")

    zygote._fork_exec = no_fork  # type: ignore[method-assign]
    fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
    request = {
        "op": "exec",
        "id": 7,
        "cwd": str(tmp_path),
        "env": {"PATH": os.environ["PATH"]},
        "argv": ["true"],
        "rlimits": [_current("RLIMIT_NOFILE"), _current("RLIMIT_CORE")],
    }
    try:
        reply = zygote._exec(request, fds)
        assert reply["op"] == "started", reply
        _, status = os.waitpid(reply["pid"], 0)
        assert os.waitstatus_to_exitcode(status) == 0
        missing = zygote._exec({**request, "argv": ["no-such-program-here"]}, fds)
        assert (missing["op"], missing["errno"], missing["filename"]) == ("failed", 2, "no-such-program-here")
    finally:
        for fd in fds:
            os.close(fd)
        for end in (zygote._wake_r, zygote._wake_w):
            os.close(end)
        ours.close()
        theirs.close()
