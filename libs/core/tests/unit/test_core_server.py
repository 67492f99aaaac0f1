"""The garbage collector is frozen once a service has started."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import uvicorn

from automation_core.server import freeze_when_started


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
