"""The CPU of a run's child alone: the fork server and the runner, without broker, database or job-api.

Runs the same job N times through :class:`~automation_executor.runner.ChildRunner` and the replica's
fork server, ``--concurrency`` at a time, once per variant, and repeats the variants alternately
(``--rounds``), so that a machine whose speed drifts shows in every variant alike. Per run it prints
the CPU of the children (user and system, from the fork server's reaped children), of the fork server
itself, and of this process (the executor's side of the runner), with the runs per second.

Variants: ``preloaded`` (the default settings: the fork server imports a ``python`` handler's module
once a child has loaded it) and ``every-child`` (``AUTOMATION_EXECUTOR_PRELOAD_HANDLERS=false``: every
child imports it). Nothing is asserted.

    uv run --group bench python services/executor/bench/bench_children.py [--runs 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import datetime

from bench_common import PerItem, add_round_arguments, check_round_arguments, measure_items, print_alternated

from automation_contracts import LogStream, RunRequested
from automation_executor.app import fork_server_environment
from automation_executor.launch import fork_server
from automation_executor.runner import ChildRunner
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data

NOOP_HANDLER = "automation_executor.examples.handlers:noop"
VARIANTS = {"preloaded": True, "every-child": False}
"""Each variant's ``executor_preload_handlers``."""
WARM_UP_RUNS = 20


class _Discard:
    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        """The runs' log lines are not kept."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_children", description=__doc__.split("\n\n")[0])
    add_round_arguments(parser, count="runs", default=600, rounds=3)
    parser.add_argument("--handler", default=NOOP_HANDLER, help="the python step's handler (default %(default)s)")
    args = parser.parse_args(argv)
    check_round_arguments(parser, args, count="runs")
    return args


def _request(handler: str) -> RunRequested:
    data = run_request_data([{"name": "step", "type": "python", "config": {"handler": handler}}])
    return RunRequested.model_validate(json.loads(json.dumps(data)))


async def measure(variant: str, args: argparse.Namespace, workdirs: str) -> PerItem:
    """One variant: a fresh fork server, warm-up runs, then ``args.runs`` measured runs."""
    settings = ExecutorSettings(
        env="development", executor_workdir_root=workdirs, executor_preload_handlers=VARIANTS[variant]
    )
    runner = ChildRunner(settings)
    request = _request(args.handler)
    async with fork_server(
        enabled=True, preload=settings.executor_forkserver_preload, env=fork_server_environment()
    ) as server:
        if server is None or server.server_pid is None:
            raise SystemExit("the fork server did not start")
        for _ in range(WARM_UP_RUNS):
            await runner.run(request, _Discard())
        failed: list[str] = []

        async def one() -> None:
            outcome = await runner.run(request, _Discard())
            if outcome.status != "succeeded":
                failed.append(f"{outcome.status}: {outcome.error}")

        spent = await measure_items(server.server_pid, one, count=args.runs, concurrency=args.concurrency)
    if failed:
        raise SystemExit(f"{len(failed)} runs did not succeed, e.g. {failed[0]}")
    return spent


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    await print_alternated(
        f"runs      {args.runs} per variant and round, {args.concurrency} at a time, {args.rounds} rounds alternated;"
        f" one python step, handler {args.handler}",
        ["variant", "runs/s", "children CPU ms/run (system)", "fork server ms/run", "runner ms/run"],
        rounds=args.rounds,
        ways=VARIANTS,
        prefix="bench-children-",
        measure=lambda variant, workdirs: measure(variant, args, workdirs),
        cells=lambda f: [
            f"{f.per_second:.1f}",
            f"{f.children_ms:.2f} ({f.children_system_ms:.2f})",
            f"{f.server_ms:.2f}",
            f"{f.own_ms:.2f}",
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
