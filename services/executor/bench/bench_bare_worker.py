"""The bare minimum: a hand-written worker that keeps only what issue 4 requires of every run.

Run by the executor benchmark as its own process (``python bench_bare_worker.py``), like the Celery
worker. Written as lean as Python gets with the platform's own clients (uvloop, aio-pika, asyncpg), so
the figures of ours and of Celery can be read against it: for shell jobs it is the floor any executor
with these guarantees pays per run on this machine; for python jobs it is the simplest way (a fork of
itself), which a smaller process to fork from would beat. Per run request (a persistent message on a quorum queue,
prefetch = concurrency):

1. **Claim** the run in PostgreSQL: one autocommit ``INSERT … ON CONFLICT DO NOTHING`` of a ``running``
   row. A request whose row exists is a redelivery: acked, nothing runs (never a doubled run).
2. **A process of its own**, in a session (and so a process group) of its own, in a fresh temporary
   working directory, under resource limits (address space, CPU seconds, open files, file size) that
   this worker holds itself and the process inherits; its stdout and stderr read from a pipe to the
   end; its exit watched through a pidfd; the directory removed afterwards. The process is, by
   ``BENCH_BARE_STEPS``:

   - ``shell``: ``true``, started with ``posix_spawn``;
   - ``python``: a fork of this worker (its modules imported, its objects frozen out of the
     collector's reach) that calls a no-op function, writes its result as JSON to the pipe and exits.
3. **Record the outcome**: one autocommit ``UPDATE`` of the row to ``succeeded`` or ``failed`` (only if it
   is still ``running``).
4. **Acknowledge** the message once that commit is done (never a missed run).

Nothing else: no events published, no read model of another service, no logs kept, no leases,
cancellation, retries or metrics. A run is done when its row is ``succeeded``.

Settings (environment): ``BENCH_BARE_BROKER`` (AMQP URL), ``BENCH_BARE_DATABASE`` (PostgreSQL URL,
the table made beforehand with :data:`DDL`), ``BENCH_BARE_CONCURRENCY`` (default 8),
``BENCH_BARE_WORKDIRS`` (the working directories' root; default the system's temporary directory),
``BENCH_BARE_STEPS`` (``shell``, the default, or ``python``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import asyncpg
import uvloop

QUEUE = "bare.runs"
BROKER_ENV = "BENCH_BARE_BROKER"
DATABASE_ENV = "BENCH_BARE_DATABASE"
CONCURRENCY_ENV = "BENCH_BARE_CONCURRENCY"
WORKDIRS_ENV = "BENCH_BARE_WORKDIRS"
STEPS_ENV = "BENCH_BARE_STEPS"
DDL = """
CREATE TABLE IF NOT EXISTS bare_runs (
    id uuid PRIMARY KEY,
    tag text NOT NULL,
    requested_at double precision NOT NULL,
    started_at double precision NOT NULL,
    finished_at double precision,
    status text NOT NULL,
    exit_code integer
)
"""
CLAIM = (
    "INSERT INTO bare_runs (id, tag, requested_at, started_at, status) VALUES ($1, $2, $3, $4, 'running')"
    " ON CONFLICT (id) DO NOTHING"
)
FINISH = "UPDATE bare_runs SET status = $2, exit_code = $3, finished_at = $4 WHERE id = $1 AND status = 'running'"
LIMITS = {
    resource.RLIMIT_AS: 4 * 2**30,
    resource.RLIMIT_CPU: 3600,
    resource.RLIMIT_NOFILE: 1024,
    resource.RLIMIT_FSIZE: 2**30,
}
"""What a run's process may use (soft and hard): each of the four limits the issue names, set (the
executor's defaults set the open files only; the others are its settings). Held by this worker, which
stays far below them during a benchmark, and inherited by every process it starts, so they cost
nothing per run, as in the executor's command server."""
COMMAND = ["true"]


def hold_limits() -> None:
    for number, value in LIMITS.items():
        _, hard = resource.getrlimit(number)
        ceiling = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(number, (ceiling, ceiling))


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def noop(context: dict[str, Any]) -> dict[str, Any]:
    """A python run's handler: nothing."""
    del context
    return {}


def fork_python(workdir: str, output: int) -> int:
    """A fork of this worker that calls :func:`noop` in ``workdir``, in a session of its own, writes its
    result to ``output`` and exits; its pid."""
    pid = os.fork()
    if pid == 0:  # the run's process: nothing of the event loop is used here
        code = 1
        try:
            os.setsid()
            os.chdir(workdir)
            os.write(output, json.dumps({"output": noop({"parameters": {}})}).encode())
            code = 0
        finally:
            os._exit(code)
    return pid


def spawn(program: str, workdir: str, output: int) -> int:
    """``true`` started in ``workdir``, in a session of its own, stdin from /dev/null, stdout and stderr to
    ``output``; its pid. Only this process's event-loop thread starts commands, so the ``chdir`` is safe."""
    os.chdir(workdir)
    try:
        return os.posix_spawn(
            program,
            COMMAND,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, output, 1),
                (os.POSIX_SPAWN_DUP2, output, 2),
            ],
            setsid=True,
        )
    finally:
        os.chdir("/")


def reap(pid: int) -> int:
    """The exit code of ``pid``, which has ended (its pidfd was readable): no wait."""
    _, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status)


async def run_process(start: Callable[[str, int], int], root: str) -> int:
    """Start a run's process with ``start(workdir, output)`` in a new directory, read its output to the
    end, return its exit code."""
    workdir = tempfile.mkdtemp(prefix="bare-", dir=root)
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        pid = start(workdir, write_end)
        os.close(write_end)
        write_end = -1
        pidfd = os.pidfd_open(pid)
        try:
            while True:  # the output, to its end
                try:
                    if not os.read(read_end, 65536):
                        break
                except BlockingIOError:
                    await _readable(read_end)
            await _readable(pidfd)
            return reap(pid)
        finally:
            os.close(pidfd)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        os.rmdir(workdir)


async def main() -> None:
    hold_limits()
    concurrency = int(os.environ.get(CONCURRENCY_ENV, "8"))
    root = os.environ.get(WORKDIRS_ENV) or tempfile.gettempdir()
    start: Callable[[str, int], int]
    if os.environ.get(STEPS_ENV, "shell") == "python":
        start = fork_python
    else:
        program = shutil.which(COMMAND[0])
        assert program is not None, f"{COMMAND[0]} is not on the PATH"
        start = functools.partial(spawn, program)
    pool = await asyncpg.create_pool(os.environ[DATABASE_ENV], min_size=2, max_size=concurrency)
    connection = await aio_pika.connect_robust(os.environ[BROKER_ENV])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=concurrency)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        request = json.loads(message.body)
        claimed = await pool.execute(CLAIM, request["id"], request["tag"], request["requested_at"], time.time())
        if claimed == "INSERT 0 1":
            code = await run_process(start, root)
            outcome = "succeeded" if code == 0 else "failed"
            await pool.execute(FINISH, request["id"], outcome, code, time.time())
        await message.ack()

    gc.freeze()  # what is made from here on is a fork's own; the rest is shared and left unscanned
    await queue.consume(handle)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await connection.close()
    await pool.close()


if __name__ == "__main__":
    uvloop.run(main())
