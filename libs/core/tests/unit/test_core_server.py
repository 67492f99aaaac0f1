"""The garbage collector is frozen once a service has started; the event loop a service runs on."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest
import uvicorn

from automation_core.server import freeze_when_started, loop_factory, run_cli
from automation_core.settings import EventLoopName, ServiceSettings


class _Server(uvicorn.Server):
    def __init__(self) -> None:
        super().__init__(uvicorn.Config(app=None))  # type: ignore[arg-type]


async def test_what_the_start_up_made_is_frozen_once_the_server_has_started() -> None:
    server = _Server()
    kept: list[dict[str, Any]] = [{"n": [n]} for n in range(1000)]  # long-lived state of the start-up
    garbage: list[Any] = []
    garbage.append(garbage)  # a cycle only a collection frees
    del garbage
    gc.unfreeze()
    try:
        freezing = asyncio.create_task(freeze_when_started(server))
        await asyncio.sleep(0.25)
        assert not freezing.done(), "nothing is frozen before the server has started"
        assert gc.get_freeze_count() == 0
        server.started = True
        frozen = await asyncio.wait_for(freezing, 5)
        assert frozen > len(kept)
        assert gc.collect() == 0, "the start-up's garbage was collected before the freeze"
        scanned = {id(o) for o in gc.get_objects()}  # the generations a collection walks
        assert gc.is_tracked(kept[0])
        assert not any(id(d) in scanned for d in kept), "frozen: out of the collector's reach"
    finally:
        gc.unfreeze()


def _loop_of(event_loop: EventLoopName, argv: list[str] | None = None) -> tuple[int, str]:
    """Run ``run_cli`` with ``event_loop`` chosen; the exit code and the module of the loop serve ran on."""
    ran: list[str] = []

    async def serve() -> None:
        ran.append(type(asyncio.get_running_loop()).__module__)

    async def migrate() -> None:
        raise AssertionError("serve was asked for")

    code = run_cli(argv or ["serve"], prog="test", serve=serve, migrate=migrate, event_loop=lambda: event_loop)
    return code, ran[0] if ran else ""


def test_uvloop_runs_the_service_when_asked_for_or_by_default_where_installed() -> None:
    assert _loop_of("uvloop") == (0, "uvloop")
    assert _loop_of("auto") == (0, "uvloop")
    code, module = _loop_of("asyncio")
    assert code == 0
    assert module.startswith("asyncio"), module


def test_without_uvloop_auto_falls_back_to_asyncio_and_uvloop_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_factory("auto") is None
    with pytest.raises(SystemExit, match="AUTOMATION_EVENT_LOOP=uvloop, but uvloop cannot be imported"):
        loop_factory("uvloop")


def test_the_event_loop_setting_defaults_per_service_and_a_wrong_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AUTOMATION_EVENT_LOOP", raising=False)
    assert ServiceSettings(env="development").event_loop == "auto"
    monkeypatch.setenv("AUTOMATION_EVENT_LOOP", "asyncio")
    assert ServiceSettings(env="development").event_loop == "asyncio"
    monkeypatch.setenv("AUTOMATION_EVENT_LOOP", "trio")

    def read() -> EventLoopName:
        return ServiceSettings(env="development").event_loop

    async def never() -> None:
        raise AssertionError("nothing runs with a wrong setting")

    assert run_cli(["serve"], prog="test", serve=never, migrate=never, event_loop=read) == 2
    assert "AUTOMATION_EVENT_LOOP" in capsys.readouterr().err
