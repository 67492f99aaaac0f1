"""Python step handlers: manifests decide what may run; the context reaches the platform through a fake."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import logging
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from automation_executor.child import python_step
from automation_executor.child.python_step import HandlerRefused, is_declared, load_handler
from automation_executor.examples import handlers as examples
from automation_executor.forkserver.server import preload
from automation_executor.handlers import AsyncContext, Context, UnknownSecretError


def _no_entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return []


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return [
        importlib.metadata.EntryPoint("x", "automation_executor.examples.handlers:undeclared", "automation-handlers")
    ]


def test_manifest_attribute_and_entry_points_declare_handlers() -> None:
    assert is_declared("automation_executor.examples.handlers:greet", _no_entry_points)
    assert not is_declared("automation_executor.examples.handlers:undeclared", _no_entry_points)
    assert is_declared("automation_executor.examples.handlers:undeclared", _entry_points)
    assert is_declared("automation_executor.examples.entry_point:ping")  # the executor's own entry point
    assert not is_declared("automation_executor.examples.entry_point:ping", _no_entry_points)
    assert load_handler("automation_executor.examples.handlers:greet", _no_entry_points) is examples.greet


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("os:system", "is not declared"),
        ("subprocess:run", "is not declared"),
        ("shutil:rmtree", "is not declared"),
        ("automation_executor.examples.handlers:undeclared", "is not declared"),
        ("automation_executor.examples.handlers:async_sleep", "is not declared"),
        ("no_such_package_anywhere.mod:f", "cannot import no_such_package_anywhere"),
    ],
)
def test_undeclared_handlers_are_refused(handler: str, message: str) -> None:
    with pytest.raises(HandlerRefused, match=message):
        load_handler(handler, _no_entry_points)


class FakePlatform:
    """Answers requests at once, records them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def _done(self, value: Any = None, error: BaseException | None = None) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
        return future

    def request(self, op: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        self.requests.append((op, args))
        if op == "emit":
            return self._done({"id": f"event-{len(self.requests)}"})
        return self._done({"ok": True, "title": "T", "outputs": {}, "artifacts": []})

    def secret(self, name: str) -> concurrent.futures.Future[str]:
        if name == "API_TOKEN":
            return self._done("tok")
        return self._done(error=RuntimeError(f"secret {name!r}: not found"))


def _kwargs(platform: FakePlatform) -> dict[str, Any]:
    return {
        "platform": platform,
        "parameters": {"site": "fra1"},
        "logger": logging.Logger("test"),
        "execution_id": "e",
        "job_id": "j",
        "attempt": 1,
        "step": "s",
        "workdir": Path("/nonexistent"),
    }


def test_sync_context_reaches_the_platform() -> None:
    platform = FakePlatform()
    ctx = Context(**_kwargs(platform))
    try:
        assert ctx.secrets["API_TOKEN"] == "tok"
        assert "API_TOKEN" in ctx.secrets
        assert list(ctx.secrets) == ["API_TOKEN"]
        assert "tok" not in repr(ctx.secrets)
        with pytest.raises(UnknownSecretError, match="'NOPE': not found"):
            ctx.secrets["NOPE"]
        assert ctx.emit("inventory.synced", {"n": 1}) == "event-1"
        assert ctx.emit("inventory.synced", {"n": 2}, subject="x") == "event-2"
        assert ctx.browser([{"type": "goto", "url": "https://x.org"}], timeout_seconds=5)["title"] == "T"
        with pytest.raises(TypeError):
            ctx.emit("x.y", {"not": {1, 2}})
        assert isinstance(ctx.http, httpx.Client)
        assert ctx.http is ctx.http  # made once, on first use
    finally:
        ctx.close()
    emits = [args for op, args in platform.requests if op == "emit"]
    assert [e["key"] for e in emits] == ["s:0", "s:1"]
    assert emits[1]["subject"] == "x"
    assert platform.requests[-1] == (
        "browser",
        {"actions": [{"type": "goto", "url": "https://x.org"}], "timeout_seconds": 5.0, "viewport": None},
    )


async def test_async_context_awaits_the_platform() -> None:
    platform = FakePlatform()
    ctx = AsyncContext(**_kwargs(platform))
    assert await ctx.emit("x.y", {}) == "event-1"
    result = await ctx.browser([{"type": "goto", "url": "https://x.org"}], viewport={"width": 1, "height": 2})
    assert result["ok"] is True
    assert await asyncio.to_thread(lambda: ctx.secrets["API_TOKEN"]) == "tok"
    assert isinstance(ctx.http, httpx.AsyncClient)
    await ctx.aclose()
    assert platform.requests[-1][1]["viewport"] == {"width": 1, "height": 2}


def _unreadable_entry_points(**_: object) -> Iterable[importlib.metadata.EntryPoint]:
    raise AssertionError("the entry points were read again")


def test_a_module_manifest_is_enough_without_reading_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_step, "_prepared_entry_points", None)
    monkeypatch.setattr(importlib.metadata, "entry_points", _unreadable_entry_points)
    assert is_declared("automation_executor.examples.handlers:greet")


def test_entry_points_prepared_in_the_fork_server_are_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_step, "_prepared_entry_points", None)
    prepared: list[str] = []
    fake = types.ModuleType("automation_fake_preloaded")
    fake.prepare_fork = lambda: prepared.append("yes")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    preload([fake.__name__, "automation_executor.child.python_step"])  # what the fork server does at start
    assert prepared == ["yes"]
    monkeypatch.setattr(importlib.metadata, "entry_points", _unreadable_entry_points)
    assert is_declared("automation_executor.examples.entry_point:ping")
    assert not is_declared("automation_executor.examples.handlers:undeclared")


def test_preloading_a_declared_handler_imports_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "automation_executor.examples.handlers")  # put back after the test
    assert python_step.preload_handler("automation_executor.examples.handlers:where") is None
    assert "automation_executor.examples.handlers" in sys.modules


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        ("automation_executor.examples.handlers:undeclared", "HandlerRefused: handler "),
        ("no_such_package_anywhere.mod:f", "HandlerRefused: cannot import no_such_package_anywhere"),
        ("exits_on_import:run", "SystemExit: 3"),
        ("raises_on_import:run", "ZeroDivisionError: division by zero"),
    ],
)
def test_preloading_never_raises_and_says_why_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: str, error: str
) -> None:
    """What the fork server gets back instead of an exception, whatever the module's import does."""
    (tmp_path / "exits_on_import.py").write_text('automation_handlers = ["exits_on_import:run"]\nraise SystemExit(3)\n')
    (tmp_path / "raises_on_import.py").write_text('automation_handlers = ["raises_on_import:run"]\n1 / 0\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    result = python_step.preload_handler(handler)
    assert result is not None
    assert result.startswith(error)


def test_a_step_runner_is_imported_and_prepared_in_the_fork_server_and_nothing_else_is() -> None:
    from automation_executor.forkserver.server import import_step_runner

    assert import_step_runner("automation_executor.child.events") is None
    assert "automation_executor.child.events" in sys.modules
    assert import_step_runner("os") == "not a step runner module: os"
    assert import_step_runner("automation_executor.child.no_such_runner") == (
        "ModuleNotFoundError: No module named 'automation_executor.child.no_such_runner'"
    )
