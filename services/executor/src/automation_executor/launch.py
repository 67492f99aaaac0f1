"""Starting an execution's child process: through this replica's fork server, else by spawning.

:func:`start_child` is what the runner calls. When the process-wide fork server is running (the app's
lifespan opens it with :func:`fork_server`) and the child to start is the executor child module, the
child is forked from the pre-imported server (a few milliseconds); otherwise, or if the server fails,
it is spawned as ``python -P -m automation_executor.child`` (a few hundred milliseconds). Either way it
runs in a new session and process group with the environment and working directory given.

The pid of the child is written into the :class:`ChildHandle` found in :data:`CURRENT_CHILD` (the
handler puts its slot's handle there before starting the run task), so a cancellation can signal the
child's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from automation_core.logging import get_logger
from automation_executor.forkserver.client import ForkServer, ForkServerUnavailable
from automation_executor.metrics import CHILD_LAUNCH
from automation_executor.processes import Spawned, spawn

log = get_logger(__name__)
CHILD_MODULE = "automation_executor.child"
Launcher = Literal["forkserver", "spawn", "command-server"]


@dataclass
class ChildHandle:
    """The child process of one run, once started (``pid`` is its process group id too)."""

    pid: int | None = None
    launcher: Launcher | None = None
    stopping: bool = False
    """Whether the run was asked to stop (a cancellation or a lost lease): its end is not a crash."""


CURRENT_CHILD: ContextVar[ChildHandle | None] = ContextVar("automation_executor_current_child", default=None)


RESTART_BACKOFF_SECONDS = 30.0
"""After a server died, how long before another start is tried (children are spawned meanwhile)."""


class _Registry:
    """One process-wide server (the fork server, or the command server), shared by every app in the
    process (reference counted) and restarted in the background when it dies."""

    def __init__(self, name: str, unavailable: str, *, child: bool = True) -> None:
        self.name = name
        self.child = child
        """Whether the server preloads the executor child (the command server does not)."""
        self.unavailable = unavailable
        """The log event when the server cannot start."""
        self.server: ForkServer | None = None
        self.users = 0
        self.preload: list[str] = []
        self.env: dict[str, str] | None = None
        self.hold_limits: list[tuple[str, int, int]] = []
        """The limits the command server is to hold itself (the replica's: its commands inherit them)."""
        self.next_restart = 0.0
        self.restarting: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def active(self) -> ForkServer | None:
        """The running server, if any; starts another in the background when the last one died."""
        server = self.server
        if server is not None and server.alive:
            return server
        if server is not None:
            self._restart_later()
        return None

    @contextlib.asynccontextmanager
    async def serving(
        self,
        *,
        enabled: bool,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        hold_limits: Sequence[tuple[str, int, int]] = (),
    ) -> AsyncIterator[ForkServer | None]:
        """Run the server for the block (None when disabled or when it cannot start).

        A server already running for another user of the process is shared as it is: its preloads,
        environment and held limits are the first user's (the next start takes the latest ones).
        """
        if not enabled:
            yield None
            return
        async with self.lock:
            self.preload, self.env = list(preload), dict(env) if env is not None else None
            self.hold_limits = list(hold_limits)
            if self.active() is None:
                await self._start()
            self.users += 1
        try:
            yield self.active()
        finally:
            async with self.lock:
                self.users -= 1
                if self.users == 0:
                    restarting, self.restarting = self.restarting, None
                    if restarting is not None:
                        restarting.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await restarting
                    server, self.server = self.server, None
                    if server is not None:
                        await server.close()

    async def _start(self) -> None:
        """Start a server (the caller holds the lock); on failure, the callers fall back."""
        server = ForkServer(preload=self.preload, env=self.env, child=self.child, hold_limits=self.hold_limits)
        problem: str | None = None
        try:
            await server.start()
        except ForkServerUnavailable as exc:
            problem = str(exc)
        if problem is not None:
            log.error(self.unavailable, error=problem)
            return
        old, self.server = self.server, server
        if old is not None:
            await old.close()

    def _restart_later(self) -> None:
        """After the server died: start another in the background, at most every 30 s."""
        if self.users == 0 or self.restarting is not None or time.monotonic() < self.next_restart:
            return
        self.next_restart = time.monotonic() + RESTART_BACKOFF_SECONDS

        async def restart() -> None:
            try:
                async with self.lock:
                    if self.users > 0 and (self.server is None or not self.server.alive):
                        await self._start()
            finally:
                self.restarting = None

        self.restarting = asyncio.create_task(restart(), name=f"{self.name}-restart")


_forks = _Registry("fork_server", unavailable="fork_server_unavailable_spawning_children")
_commands = _Registry("command_server", unavailable="command_server_unavailable_using_children", child=False)


def active_fork_server() -> ForkServer | None:
    """The running fork server of this process, if any."""
    return _forks.active()


def active_command_server() -> ForkServer | None:
    """The running command server of this process, if any (see :func:`command_server`)."""
    return _commands.active()


def fork_server(
    *, enabled: bool, preload: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> contextlib.AbstractAsyncContextManager[ForkServer | None]:
    """Run the process's fork server for the block (None when disabled or when it cannot start)."""
    return _forks.serving(enabled=enabled, preload=preload, env=env)


def command_server(
    *, enabled: bool, env: Mapping[str, str] | None = None, hold_limits: Sequence[tuple[str, int, int]] = ()
) -> contextlib.AbstractAsyncContextManager[ForkServer | None]:
    """Run the process's command server for the block: a fork server with nothing preloaded (~10 MiB)
    that executes the commands of jobs made only of ``shell`` steps (:mod:`automation_executor.direct`).
    ``hold_limits`` (the replica's limits, a plan) are set on the server itself where it can live under
    them, so that its commands inherit them instead of setting them each.
    None when disabled or when it cannot start: such jobs then run in a child like any other."""
    return _commands.serving(enabled=enabled, env=env, hold_limits=hold_limits)


def _is_child_module(argv: Sequence[str]) -> bool:
    return len(argv) >= 2 and list(argv[-2:]) == ["-m", CHILD_MODULE]


async def start_child(argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> Spawned:
    """Start a child (argv ``[python, -P, -m, automation_executor.child]``) with stdin, stdout and stderr piped."""
    started = time.perf_counter()
    server = active_fork_server() if _is_child_module(argv) else None
    spawned: Spawned | None = None
    launcher: Launcher = "spawn"
    if server is not None:
        try:
            spawned = await server.launch(cwd=cwd, env=env)
            launcher = "forkserver"
        except ForkServerUnavailable as exc:
            log.warning("fork_server_failed_spawning_child", error=str(exc))
    if spawned is None:
        spawned = await spawn(argv, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE, new_session=True)
    CHILD_LAUNCH.labels(launcher).observe(time.perf_counter() - started)
    handle = CURRENT_CHILD.get()
    if handle is not None:
        handle.pid, handle.launcher = spawned.pid, launcher
    return spawned
