"""The executor's side of the fork server: start it, ask it for children, learn when they exit.

:meth:`ForkServer.launch` makes the child's three pipes, hands the child's ends to the server with the
fork request, and returns a :class:`~automation_executor.processes.Spawned` whose process
(:class:`ForkedProcess`) behaves like an ``asyncio.subprocess.Process`` for the runner: stdin writer,
stdout and stderr readers, ``pid``, ``returncode`` (it is signalled by pid, see
:func:`automation_executor.processes.stop`). :meth:`ForkServer.execute` does the
same for a command the server executes itself (no stdin pipe). If the server dies, every child it
forked is killed (its process group) and reported exited with SIGKILL, and :attr:`ForkServer.alive`
turns false (callers fall back to spawning).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from automation_core.logging import get_logger
from automation_executor.forkserver.server import FORK_COMMANDS, HOLD_LIMITS, NO_CHILD
from automation_executor.processes import STREAM_LIMIT, Spawned, signal_group

log = get_logger(__name__)
SERVER_MODULE = "automation_executor.forkserver"
MAX_REPLY = 1 << 16
START_TIMEOUT_SECONDS = 30.0
FORK_TIMEOUT_SECONDS = 10.0
PRELOAD_SECONDS = 5.0
"""How long the server may spend importing one handler's or step runner's module before a fork (well under
the fork timeout); a slower import is interrupted and the children go on importing it each."""


_DIED_IMPORTING: set[str] = set()
"""Handlers (and step runner modules) a fork server was asked to import and that died before it
answered: never asked of a fork server again in this process (its children go on importing them each)."""


class ForkServerUnavailable(Exception):
    """The fork server is not running (or stopped answering); spawn the child instead."""


class ForkedProcess:
    """A child forked by the fork server, seen through its pipes and the server's exit report."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._returncode: int | None = None
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def set_exited(self, returncode: int) -> None:
        if self._returncode is None:
            self._returncode = returncode
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.close()
        self.exited.set()


async def _connect(process: ForkedProcess, stdin_w: int | None, stdout_r: int, stderr_r: int) -> None:
    loop = asyncio.get_running_loop()
    readers: list[asyncio.StreamReader] = []
    for fd in (stdout_r, stderr_r):
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        pipe: IO[bytes] = os.fdopen(fd, "rb", buffering=0)
        await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r, loop=loop), pipe)  # type: ignore[misc]
        readers.append(reader)
    process.stdout, process.stderr = readers
    if stdin_w is None:
        return
    writer_pipe: IO[bytes] = os.fdopen(stdin_w, "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop=loop), writer_pipe
    )
    process.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    if process.exited.is_set() and not process.stdin.is_closing():
        process.stdin.close()


class ForkServer:
    """One fork server process and the children it forked for this executor."""

    def __init__(
        self,
        *,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        child: bool = True,
        fork_commands: bool = False,
        hold_limits: Sequence[tuple[str, int, int]] = (),
    ) -> None:
        self.role = "fork_server" if child else "command_server"
        """Which server this is, in its log events (``child=False``: the command server)."""
        self._preload = (list(preload) if child else [NO_CHILD, *preload]) + ([FORK_COMMANDS] if fork_commands else [])
        if hold_limits:  # the command server's own limits, which its commands inherit (see the server module)
            plan = json.dumps([list(entry) for entry in hold_limits], separators=(",", ":"))
            self._preload.append(HOLD_LIMITS + plan)
        self.held_limits: list[tuple[str, int, int]] = []
        """The limits the server set on itself (its ``ready`` reply): every command it starts has them."""
        self._env = dict(env) if env is not None else None
        self._sock: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future[int] | None = None
        self.alive = False
        self.server_pid: int | None = None
        self._asked: set[str] = set(self._preload)
        """Handlers and modules the server has (preloaded at its start) or was asked to import."""
        self._unsent: dict[str, list[str]] = {"handlers": [], "modules": []}
        """What the next fork request asks the server to import, by the request's field."""
        self._importing: set[str] = set()
        """Handlers and modules sent to the server whose import it has not answered yet."""
        self.preloaded_handlers: list[str] = []
        """The ``python`` handlers whose modules the server has imported (see :meth:`learn`)."""
        self.preloaded_modules: list[str] = []
        """Step runner modules the server imported after children used them (see :meth:`learn_modules`)."""

    def learn(self, handlers: Iterable[str]) -> None:
        """Declared ``python`` handlers a child loaded: the next fork request asks the server to import
        each one not asked for before, so the children after it find the module loaded."""
        self._ask("handlers", handlers)

    def learn_modules(self, modules: Iterable[str]) -> None:
        """Step runner modules a child used (e.g. the ssh steps'): the next fork request asks the server
        to import each one it neither preloads nor was asked for, so the children after it find it loaded."""
        self._ask("modules", modules)

    def _ask(self, field: str, names: Iterable[str]) -> None:
        for name in sorted(set(names) - self._asked - _DIED_IMPORTING):
            self._asked.add(name)
            self._unsent[field].append(name)

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start the server process and wait until it has preloaded (ForkServerUnavailable on failure)."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                SERVER_MODULE,
                str(theirs.fileno()),
                *self._preload,
                pass_fds=[theirs.fileno()],
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ForkServerUnavailable(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            self.server_pid = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except (TimeoutError, ForkServerUnavailable) as exc:
            await self.close()
            raise ForkServerUnavailable(f"the fork server did not start: {exc}") from exc
        self.alive = True
        log.info(
            "fork_server_started",
            role=self.role,
            pid=self.server_pid,
            preload=[name for name in self._preload if not name.startswith(HOLD_LIMITS)],
            held_limits=[name for name, _, _ in self.held_limits],
        )

    async def launch(self, *, cwd: str, env: Mapping[str, str]) -> Spawned:
        """Fork a child running the executor child's ``main()`` in ``cwd`` with exactly ``env``."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        payload: dict[str, Any] = {"op": "fork", "cwd": cwd, "env": dict(env)}
        for field, names in self._unsent.items():
            if names:
                payload[field], self._unsent[field] = names, []
                self._importing.update(names)
                payload["handlers_seconds"] = PRELOAD_SECONDS
        process = await self._start(payload, [stdin_r, stdout_w, stderr_w], [stdin_w, stdout_r, stderr_r])
        await _connect(process, stdin_w, stdout_r, stderr_r)
        return Spawned(process, process.exited)

    async def execute(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], rlimits: Sequence[tuple[str, int, int]] = ()
    ) -> Spawned:
        """Start the command ``argv`` in a new session in ``cwd`` with exactly ``env``, under ``rlimits``.

        Its stdin reads ``/dev/null``; stdout and stderr are piped. ``OSError`` (errno and file name of the
        child's failure) when it could not be executed; :class:`ForkServerUnavailable` when the server is gone.
        """
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        payload = {"op": "exec", "cwd": cwd, "env": dict(env), "argv": list(argv), "rlimits": list(rlimits)}
        process = await self._start(payload, [stdin, stdout_w, stderr_w], [stdout_r, stderr_r])
        await _connect(process, None, stdout_r, stderr_r)
        return Spawned(process, process.exited)

    async def _start(self, payload: dict[str, Any], theirs: list[int], ours: list[int]) -> ForkedProcess:
        """Send one request with ``theirs`` (closed here); the started child. ``ours`` are closed on failure."""
        if not self.alive or self._sock is None:
            for fd in (*theirs, *ours):
                os.close(fd)
            raise ForkServerUnavailable("the fork server is not running")
        loop = asyncio.get_running_loop()
        ident = next(self._ids)
        started: asyncio.Future[ForkedProcess] = loop.create_future()
        self._pending[ident] = started
        try:
            try:
                await self._send(json.dumps({**payload, "id": ident}).encode(), theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            return await asyncio.wait_for(started, FORK_TIMEOUT_SECONDS)
        except BaseException:
            self._pending.pop(ident, None)
            for fd in ours:
                os.close(fd)
            raise

    async def _send(self, data: bytes, fds: list[int]) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(self._sock, [data], fds)
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self._sock.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self._sock.fileno())
            except OSError as exc:
                self._lost(f"cannot reach the fork server: {exc}")
                raise ForkServerUnavailable(str(exc)) from exc
            else:
                return

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(MAX_REPLY)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"fork server socket failed: {exc}")
                return
            if not data:
                self._lost("the fork server exited")
                return
            self._on_message(json.loads(data))

    def _on_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and self._ready is not None and not self._ready.done():
            self.held_limits = [(str(name), int(soft), int(hard)) for name, soft, hard in message.get("held") or ()]
            self._ready.set_result(int(message["pid"]))
        elif op == "started":
            child = ForkedProcess(int(message["pid"]))
            self._children[child.pid] = child
            future = self._pending.pop(int(message["id"]), None)
            if future is not None and not future.done():
                future.set_result(child)
            else:  # nobody waits for it any more (timed out): it must not run
                signal_group(child.pid, signal.SIGKILL)
        elif op == "exited":
            ended = self._children.pop(int(message["pid"]), None)
            if ended is not None:
                ended.set_exited(int(message["returncode"]))
        elif op == "preloaded":
            self._on_preloaded(message)
        elif op == "failed":
            self._on_failed(message)

    def _on_preloaded(self, message: dict[str, Any]) -> None:
        """A handler's (``handler``) or step runner's (``module``) module imported by the server, or not."""
        kind = "module" if "module" in message else "handler"
        name = str(message.get(kind))
        self._importing.discard(name)
        if message.get("error") is None:
            (self.preloaded_modules if kind == "module" else self.preloaded_handlers).append(name)
            log.info(f"fork_server_{kind}_preloaded", **{kind: name})
        else:
            log.warning(f"fork_server_{kind}_not_preloaded", **{kind: name}, error=message["error"])

    def _on_failed(self, message: dict[str, Any]) -> None:
        error: Exception = ForkServerUnavailable(str(message.get("error")))
        if isinstance(message.get("errno"), int):  # the command could not be executed
            error = OSError(message["errno"], str(message.get("error")), message.get("filename"))
        ident = message.get("id")
        if ident is None and self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        elif ident is not None:
            future = self._pending.pop(int(ident), None)
            if future is not None and not future.done():
                future.set_exception(error)

    def _lost(self, why: str) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
        was_alive, self.alive = self.alive, False
        for child in list(self._children.values()):
            signal_group(child.pid, signal.SIGKILL)
            child.set_exited(-signal.SIGKILL)
        self._children.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ForkServerUnavailable(why))
        self._pending.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ForkServerUnavailable(why))
        if was_alive:
            log.error("fork_server_lost", role=self.role, reason=why)
        if self._importing:  # it died importing one of them: none is asked of a fork server again
            _DIED_IMPORTING.update(self._importing)
            log.error("fork_server_lost_importing_handlers", handlers=sorted(self._importing))
            self._importing.clear()

    async def close(self) -> None:
        """Stop the server (it kills any child still running) and wait for it to exit."""
        sock, self._sock = self._sock, None
        self.alive = False
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        for child in list(self._children.values()):
            child.set_exited(-signal.SIGKILL)
        self._children.clear()
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 5.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
