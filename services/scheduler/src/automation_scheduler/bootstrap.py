"""The composition root: the scheduler's parts, built once per app from an open runtime (or fakes)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from automation_messaging import Runtime
from automation_scheduler.domain.compiled import CompiledCache
from automation_scheduler.fire_loop import FireLoop, StateSampler
from automation_scheduler.service import ScheduleService
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.wake import WakeSignal


@dataclass(frozen=True, slots=True)
class Scheduler:
    """Everything the HTTP API, the consumer and the lifespan need (``app.state.scheduler``)."""

    settings: SchedulerSettings
    engine: AsyncEngine
    service: ScheduleService
    fire_loop: FireLoop
    sampler: StateSampler
    signal: WakeSignal
    cache: CompiledCache


def build_scheduler(settings: SchedulerSettings, runtime: Runtime) -> Scheduler:
    """Wire the scheduler on an open runtime (engine, broker, outbox relay)."""
    relay = runtime.relay
    cache = CompiledCache(settings.scheduler_cache_size)
    signal = WakeSignal()
    fire_loop = FireLoop(
        runtime.engine,
        settings,
        cache,
        signal,
        on_committed=relay.wake if relay is not None else (lambda: None),
    )
    return Scheduler(
        settings=settings,
        engine=runtime.engine,
        service=ScheduleService(runtime.engine, cache, signal),
        fire_loop=fire_loop,
        sampler=StateSampler(runtime.engine, settings.scheduler_stats_interval_seconds),
        signal=signal,
        cache=cache,
    )
