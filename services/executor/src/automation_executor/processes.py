"""Starting and stopping processes from asyncio, for the executor and its child alike.

``asyncio.subprocess.Process.wait()`` returns only once the process has exited *and* its pipes are
closed, so a background process that inherited a pipe (``sleep 600 &``) would hold a step forever.
:func:`spawn` therefore also exposes the moment the process itself exits (:attr:`Spawned.exited`).

A :class:`Spawned` holds any :class:`ProcessLike`: an ``asyncio.subprocess.Process``, or a child forked
by the fork server (:mod:`automation_executor.forkserver`), which is not this process's own child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from asyncio.subprocess import Process, SubprocessStreamProtocol
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

STREAM_LIMIT = 8 * 1024 * 1024
"""The buffer of a pipe's reader: reading pauses when this much (twice it) waits unread. A line longer
than this is read with :func:`read_line`, in pieces, without raising the limit for every pipe."""


class _ExitAwareProtocol(SubprocessStreamProtocol):
    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class ProcessLike(Protocol):
    """What the executor uses of a started process (the subset of ``asyncio.subprocess.Process``)."""

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Spawned:
    """A started process and the event set when it exits (whatever holds its pipes)."""

    process: ProcessLike
    exited: asyncio.Event
    transport: asyncio.SubprocessTransport | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        """Close the pipes (of a process :func:`spawn` started) while the event loop still runs.

        A transport left to the garbage collector after its loop closed prints ``Exception ignored ...
        Event loop is closed``, which ends up in the execution's log (a background process kept the pipes).
        """
        if self.transport is not None:
            self.transport.close()

    async def wait_exit(self) -> int:
        """The process's return code, as soon as it has exited."""
        await self.exited.wait()
        code = self.process.returncode
        assert code is not None
        return code


async def spawn(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = asyncio.subprocess.DEVNULL,
    new_session: bool = False,
    limit: int = STREAM_LIMIT,
) -> Spawned:
    """Start ``argv`` (never through a shell) with stdout and stderr piped."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAwareProtocol(limit, loop),
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=new_session,
    )
    return Spawned(Process(transport, protocol, loop), protocol.exited, transport)


class LineTooLong(ValueError):
    """A line longer than :func:`read_line` was asked to accept."""


async def read_line(reader: asyncio.StreamReader, max_bytes: int) -> bytes | bytearray:
    """The next line with its newline (at the end of the stream: what is left, ``b""`` when nothing is).

    A line may be longer than the reader's own limit (:data:`STREAM_LIMIT`, which also bounds what waits
    unread): it is gathered in pieces, up to ``max_bytes``. :class:`LineTooLong` beyond that; the rest
    of the line is then left unread.
    """
    pieces: bytearray | None = None
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end of the stream, without a last newline
            line = exc.partial
        except asyncio.LimitOverrunError as exc:  # longer than the reader's limit: take what it holds so far
            if pieces is None:
                pieces = bytearray()
            pieces += await reader.readexactly(exc.consumed)
            if len(pieces) > max_bytes:
                raise LineTooLong(f"a line of more than {max_bytes} bytes") from None
            continue
        if pieces is None:  # the common case: one piece, no copy
            if len(line) > max_bytes:
                raise LineTooLong(f"a line of more than {max_bytes} bytes")
            return line
        pieces += line
        if len(pieces) > max_bytes:
            raise LineTooLong(f"a line of more than {max_bytes} bytes")
        return pieces


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group's last member is a zombie of someone else's; nothing left to kill
        return False
    return True


async def stop(spawned: Spawned, *, grace: float, group: bool) -> int:
    """SIGTERM (the process, or its whole group), SIGKILL after ``grace`` seconds; the return code."""
    if spawned.process.returncode is None or group:
        _send(spawned, signal.SIGTERM, group=group)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(spawned.exited.wait(), grace)
    if spawned.process.returncode is None or group:
        _send(spawned, signal.SIGKILL, group=group)
    return await spawned.wait_exit()


def _send(spawned: Spawned, sig: signal.Signals, *, group: bool) -> None:
    if group:
        signal_group(spawned.pid, sig)
    elif spawned.process.returncode is None:
        # os.kill, not Popen.send_signal: that polls first, and a poll that reaps a process which has just
        # exited leaves asyncio's child watcher with "exit status already read: will report returncode
        # 255" (a warning in the run's log, and the wrong exit code). Until the watcher reaps it, the
        # pid is the process's own (or its zombie's), so no other process can get the signal.
        with contextlib.suppress(ProcessLookupError):
            os.kill(spawned.pid, sig)
