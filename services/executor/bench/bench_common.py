"""What both sides of the executor benchmark share: the paced publisher, process sampling, statistics.

The same aio-pika publisher (publisher confirms, persistent messages, at most ``WINDOW`` confirms
outstanding) feeds the platform's executor and the Celery workers, so neither side gets a faster client.
A paced run offers message ``i`` at ``t0 + i / rate``; an unpaced one publishes as fast as the confirms
come back. Every message is built at the moment it is published, so the request time it carries is the
moment it left the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import psutil  # type: ignore[import-untyped]  # no stubs in the bench group
from aio_pika.abc import AbstractExchange

WINDOW = 256
"""Publishes awaiting their broker confirm at once."""
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Published:
    """When the first and last message left the client, and when the last confirm came back."""

    count: int
    first: float
    last: float
    confirmed: float

    @property
    def rate(self) -> float:
        """Messages per second offered by the client (first to last publish)."""
        return (self.count - 1) / (self.last - self.first) if self.last > self.first else math.inf


async def publish(
    exchange: AbstractExchange,
    routing_key: str,
    build: Callable[[int], aio_pika.Message],
    count: int,
    rate: float | None,
) -> Published:
    """Publish ``build(i)`` for ``i < count`` at ``rate`` per second (None: as fast as confirms allow)."""
    window = asyncio.Semaphore(WINDOW)
    pending: set[asyncio.Task[object]] = set()
    failures: list[BaseException] = []

    def done(task: asyncio.Task[object]) -> None:
        pending.discard(task)
        window.release()
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]

    start = time.perf_counter()
    first = last = 0.0
    for i in range(count):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await window.acquire()
        if failures:
            raise RuntimeError(f"publish failed: {failures[0]!r}")
        message = build(i)
        last = time.time()
        first = first or last
        task: asyncio.Task[object] = asyncio.create_task(exchange.publish(message, routing_key=routing_key))
        pending.add(task)
        task.add_done_callback(done)
    if pending:
        await asyncio.gather(*pending)
    if failures:
        raise RuntimeError(f"publish failed: {failures[0]!r}")
    return Published(count=count, first=first, last=last, confirmed=time.time())


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """p50, p99 and max of a set of latencies, in milliseconds."""

    p50: float
    p99: float
    max: float
    count: int

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Latency:
        values = [s * 1000 for s in seconds]
        return cls(percentile(values, 50), percentile(values, 99), max(values, default=math.nan), len(values))

    def text(self) -> str:
        return f"p50 {fmt_ms(self.p50)}, p99 {fmt_ms(self.p99)}, max {fmt_ms(self.max)} (n={self.count})"


def fmt_ms(ms: float) -> str:
    """Milliseconds for a table cell (seconds once it is large)."""
    if math.isnan(ms):
        return "-"
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def _cpu(proc: psutil.Process, *, reaped: bool) -> float:
    """User + system seconds of ``proc`` (plus those of the children it has reaped, when ``reaped``)."""
    with contextlib.suppress(psutil.Error):
        t = proc.cpu_times()
        own = float(t.user + t.system)
        return own + (float(t.children_user + t.children_system) if reaped else 0.0)
    return 0.0


def _minor_faults(proc: psutil.Process, *, reaped: bool) -> int:
    """Minor page faults of ``proc`` (plus those of the children it has reaped, when ``reaped``), from
    ``/proc/<pid>/stat``; 0 where there is none. Unlike CPU time, a count that the machine's speed does
    not move."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        # After the command name: the state is field 3, so minflt (10) and cminflt (11) are at 7 and 8.
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[7]) + (int(fields[8]) if reaped else 0)
    return 0


@dataclass
class TreeUsage:
    """Peak RSS and CPU time of a process tree over a window."""

    rss_peak: int = 0
    """Largest sum of RSS over the process and all its descendants seen in one sample."""
    pss_peak: int = 0
    """The same for PSS: pages shared between processes (forked from one parent) are counted once."""
    parent_rss_peak: int = 0
    children_peak: int = 0
    cpu_seconds: float = 0.0
    """CPU of the whole tree: the process, its descendants, and the children any of them reaped."""
    own_cpu_seconds: float = 0.0
    """The part of ``cpu_seconds`` spent in the root process itself."""
    minor_faults: int = 0
    """Minor page faults of the whole tree, counted as ``cpu_seconds`` is."""
    own_minor_faults: int = 0
    """The part of ``minor_faults`` taken by the root process itself."""


@dataclass
class Sampler:
    """Samples process trees every ``SAMPLE_SECONDS`` until stopped; also CPU of named groups."""

    trees: dict[str, int]
    """Name -> pid of the root of a tree (RSS and CPU, descendants included)."""
    groups: dict[str, list[int]] = field(default_factory=dict)
    """Name -> pids whose CPU is summed (e.g. PostgreSQL backends)."""
    servers: dict[str, int] = field(default_factory=dict)
    """Name -> pid of a server whose CPU is summed with all its processes', those that started or ended in
    the window included (PostgreSQL's postmaster and its backends); no memory sampled. Into ``group_cpu``."""
    usage: dict[str, TreeUsage] = field(default_factory=dict)
    group_cpu: dict[str, float] = field(default_factory=dict)
    machine_busy_percent: float = 0.0
    _task: asyncio.Task[None] | None = None

    def _procs(self) -> dict[str, psutil.Process]:
        procs: dict[str, psutil.Process] = {}
        for name, pid in self.trees.items():
            with contextlib.suppress(psutil.Error):
                procs[name] = psutil.Process(pid)
        return procs

    async def __aenter__(self) -> Sampler:
        self._roots = self._procs()
        self._groups = {n: [psutil.Process(p) for p in pids if psutil.pid_exists(p)] for n, pids in self.groups.items()}
        self._before = {n: self._tree(p, _cpu) for n, p in self._roots.items()}
        self._own_before = {n: _cpu(p, reaped=False) for n, p in self._roots.items()}
        self._faults_before = {n: int(self._tree(p, _minor_faults)) for n, p in self._roots.items()}
        self._own_faults_before = {n: _minor_faults(p, reaped=False) for n, p in self._roots.items()}
        self._group_before = {n: sum(_cpu(p, reaped=False) for p in ps) for n, ps in self._groups.items()}
        self._servers = {n: psutil.Process(p) for n, p in self.servers.items() if psutil.pid_exists(p)}
        self._server_before = {n: self._tree(p, _cpu) for n, p in self._servers.items()}
        self._machine = psutil.cpu_times()
        self._t0 = time.monotonic()
        self.usage = {n: TreeUsage() for n in self._roots}
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample()
        span = max(1e-9, time.monotonic() - self._t0)
        for name, proc in self._roots.items():
            self.usage[name].cpu_seconds = self._tree(proc, _cpu) - self._before[name]
            self.usage[name].own_cpu_seconds = _cpu(proc, reaped=False) - self._own_before[name]
            self.usage[name].minor_faults = int(self._tree(proc, _minor_faults)) - self._faults_before[name]
            self.usage[name].own_minor_faults = _minor_faults(proc, reaped=False) - self._own_faults_before[name]
        for name, procs in self._groups.items():
            self.group_cpu[name] = sum(_cpu(p, reaped=False) for p in procs) - self._group_before[name]
        for name, proc in self._servers.items():
            self.group_cpu[name] = self._tree(proc, _cpu) - self._server_before[name]
        after = psutil.cpu_times()
        busy = sum(after) - sum(self._machine) - (after.idle - self._machine.idle)
        self.machine_busy_percent = busy / span / (psutil.cpu_count() or 1) * 100

    @staticmethod
    def _tree(proc: psutil.Process, measure: Callable[..., float]) -> float:
        """``measure`` (:func:`_cpu`, :func:`_minor_faults`) of ``proc`` and its descendants, reaped children
        included."""
        total = measure(proc, reaped=True)
        with contextlib.suppress(psutil.Error):
            total += sum(measure(child, reaped=True) for child in proc.children(recursive=True))
        return total

    def _sample(self) -> None:
        for name, proc in self._roots.items():
            usage = self.usage[name]
            with contextlib.suppress(psutil.Error):
                memory = proc.memory_full_info()
                parent, rss, pss = memory.rss, memory.rss, memory.pss
                kids = proc.children(recursive=True)
                for child in kids:
                    with contextlib.suppress(psutil.Error):
                        memory = child.memory_full_info()
                        rss += memory.rss
                        pss += memory.pss
                usage.rss_peak = max(usage.rss_peak, rss)
                usage.pss_peak = max(usage.pss_peak, pss)
                usage.parent_rss_peak = max(usage.parent_rss_peak, parent)
                usage.children_peak = max(usage.children_peak, len(kids))

    async def _loop(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(SAMPLE_SECONDS)


def rabbit_pids() -> list[int]:
    """The RabbitMQ node's Erlang VM (its CPU is the whole broker's, shared with its other users)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]


def postmaster_pid() -> int | None:
    """PostgreSQL's postmaster on this machine: the ``postgres`` process whose parent is not one (None: none seen)."""
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            if psutil.Process(proc.info["ppid"]).name() != "postgres":
                return int(proc.pid)
    return None


async def pg_backends(conn: asyncpg.Connection) -> list[int]:
    """The PostgreSQL backends connected to ``conn``'s database now, ``conn``'s own left out."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return [int(r["pid"]) for r in rows]


CLUSTER = "postgres cluster"
"""The ``Sampler.servers`` name of PostgreSQL's whole cluster (see :func:`postgres_cluster`)."""


def postgres_cluster() -> dict[str, int]:
    """``Sampler.servers`` for the CPU of the whole PostgreSQL cluster, when its postmaster is found."""
    pid = postmaster_pid()
    return {} if pid is None else {CLUSTER: pid}


def mib(n: int) -> str:
    """Bytes as MiB for a table cell."""
    return f"{n / 2**20:.0f} MiB"


def cpu_model() -> str:
    """The CPU's model name, for the configuration a benchmark prints."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def add_round_arguments(parser: argparse.ArgumentParser, *, count: str, default: int, rounds: int) -> None:
    """``--<count>`` per variant and round, ``--rounds`` (alternations) and ``--concurrency``."""
    parser.add_argument(f"--{count}", type=int, default=default, help="per variant and round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternations of the variants (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="at a time (default %(default)s)")


def check_round_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, *, count: str) -> None:
    """Refuse a count, round or concurrency below 1 (the parser's usage error)."""
    if getattr(args, count) < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error(f"--{count}, --rounds and --concurrency must be positive")


def machine_lines() -> list[str]:
    """The machine and the load before the run, as the alternating benchmarks print them."""
    python = sys.version.split()[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"machine   {cpu_model()}, {os.cpu_count()} CPUs, Python {python}, {platform.system()} {platform.release()}",
        f"load      {load} (1, 5, 15 min) before the run",
    ]


async def print_alternated(
    description: str,
    columns: Sequence[str],
    *,
    rounds: int,
    ways: Iterable[str],
    prefix: str,
    measure: Callable[[str, str], Awaitable[PerItem]],
    cells: Callable[[PerItem], Sequence[str]],
) -> None:
    """Print the machine, ``description`` and the load, then one table row per round and way, the ways
    measured alternately (``measure(way, directory)``, in one temporary directory named ``prefix…``):
    the round, the way and the ``cells`` of what was measured, under ``columns`` after those two."""
    machine, load = machine_lines()
    print(f"{machine}\n{description}\n{load}\n")
    print("| round | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        for round_number in range(1, rounds + 1):
            for way in ways:
                row = [str(round_number), way, *cells(await measure(way, directory))]
                print("| " + " | ".join(row) + " |", flush=True)


@dataclass(frozen=True, slots=True)
class PerItem:
    """What one item of a measured batch cost, in milliseconds of CPU (see :func:`measure_items`)."""

    per_second: float
    children_ms: float
    children_system_ms: float
    server_ms: float
    own_ms: float


async def measure_items(
    server_pid: int, one: Callable[[], Awaitable[None]], *, count: int, concurrency: int
) -> PerItem:
    """Await ``one()`` ``count`` times, ``concurrency`` at a time; the CPU per item of the server process
    ``server_pid`` itself, of its reaped children, and of this process, with the items per second."""
    process = psutil.Process(server_pid)
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await one()

    before, own_before, started = process.cpu_times(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(count)))
    elapsed = time.perf_counter() - started
    after, own_after = process.cpu_times(), resource.getrusage(resource.RUSAGE_SELF)
    per = 1000.0 / count
    children_system = after.children_system - before.children_system
    return PerItem(
        per_second=count / elapsed,
        children_ms=(after.children_user - before.children_user + children_system) * per,
        children_system_ms=children_system * per,
        server_ms=(after.user - before.user + after.system - before.system) * per,
        own_ms=(own_after.ru_utime - own_before.ru_utime + own_after.ru_stime - own_before.ru_stime) * per,
    )
