"""The CPU of a shell step's command alone: the command server and what it starts, nothing else.

Starts ``true`` N times through the replica's command server (``ForkServer.execute``, as a job of
commands does), ``--concurrency`` at a time, under the default limits, once per way the server can
start a command, and repeats the ways alternately (``--rounds``), so that a machine whose speed drifts
shows in every way alike. Per command it prints the CPU of what the server started (``true``, with
``prlimit`` or the forked child before it; from the server's reaped children), of the server itself, and of this
process (the executor's side), with the commands per second.

Ways: ``held`` (the server holds the limits itself and starts the command with ``posix_spawn``; the
command inherits them: the executor's default), ``prlimit`` (the server holds nothing and starts the
command with ``posix_spawn`` under util-linux's ``prlimit``, which sets them) and ``fork`` (the server
forks a child that sets the limits, then ``exec``). Nothing is asserted.

    uv run --group bench python services/executor/bench/bench_commands.py [--commands 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

from bench_common import PerItem, add_round_arguments, check_round_arguments, measure_items, print_alternated

from automation_core.logging import configure_logging
from automation_executor.child.limits import limit_plan
from automation_executor.runner import default_limits
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import COMMAND_WAYS, command_server_by_way

WARM_UP_COMMANDS = 50


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_commands", description=__doc__.split("\n\n")[0])
    add_round_arguments(parser, count="commands", default=2000, rounds=2)
    args = parser.parse_args(argv)
    check_round_arguments(parser, args, count="commands")
    return args


def default_plan() -> list[tuple[str, int, int]]:
    """The limits a shell step runs under with the executor's default settings."""
    plan, _ = limit_plan(default_limits(ExecutorSettings(env="development")))
    return plan


async def measure(way: str, args: argparse.Namespace, cwd: str) -> PerItem:
    """One way: a fresh command server, warm-up commands, then ``args.commands`` measured ones."""
    plan, env = default_plan(), {"PATH": os.environ.get("PATH", os.defpath)}
    server = command_server_by_way(way, plan)
    await server.start()

    async def one() -> None:
        spawned = await server.execute(["true"], cwd=cwd, env=env, rlimits=plan)
        assert spawned.process.stdout is not None
        assert spawned.process.stderr is not None
        await asyncio.gather(spawned.process.stdout.read(), spawned.process.stderr.read())
        code = await spawned.wait_exit()
        spawned.close()
        if code != 0:
            raise SystemExit(f"true exited {code} ({way})")

    try:
        assert server.server_pid is not None
        for _ in range(WARM_UP_COMMANDS):
            await one()
        spent = await measure_items(server.server_pid, one, count=args.commands, concurrency=args.concurrency)
    finally:
        await server.close()
    return spent


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("bench-commands", "WARNING", "console")  # not a line per command server started
    await print_alternated(
        f"commands  `true` {args.commands} per way and round, {args.concurrency} at a time, {args.rounds} rounds"
        f" alternated; limits {', '.join(name for name, _, _ in default_plan())}",
        ["way", "commands/s", "started, CPU ms/command", "server ms/command", "executor ms/command"],
        rounds=args.rounds,
        ways=COMMAND_WAYS,
        prefix="bench-commands-",
        measure=lambda way, cwd: measure(way, args, cwd),
        cells=lambda f: [f"{f.per_second:.1f}", f"{f.children_ms:.2f}", f"{f.server_ms:.2f}", f"{f.own_ms:.2f}"],
    )


if __name__ == "__main__":
    asyncio.run(main())
