"""The composition root: the scheduler's parts, built once per app from an open runtime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from automation_messaging import Runtime
from automation_scheduler.backfill import BackfillService
from automation_scheduler.db.tables import outbox
from automation_scheduler.dispatch import FireDispatcher
from automation_scheduler.domain.compiled import CompiledCache
from automation_scheduler.executions import ExecutionEventsHandler
from automation_scheduler.fire_loop import FireLoop
from automation_scheduler.maintenance import Periodic, cleanup, sample_states
from automation_scheduler.service import ScheduleService
from automation_scheduler.settings import SchedulerSettings
from automation_scheduler.triggers import TriggerBindings, TriggerEventsHandler
from automation_scheduler.wake import WakeSignal


@dataclass(frozen=True, slots=True)
class Scheduler:
    """Everything the HTTP API, the consumers and the lifespan need (``app.state.scheduler``)."""

    settings: SchedulerSettings
    engine: AsyncEngine
    service: ScheduleService
    fire_loop: FireLoop
    sampler: Periodic
    cleaner: Periodic
    binder: Periodic
    bindings: TriggerBindings
    backfills: BackfillService
    executions: ExecutionEventsHandler
    triggers: TriggerEventsHandler
    signal: WakeSignal
    cache: CompiledCache

    @property
    def tasks(self) -> tuple[Periodic, ...]:
        """The periodic tasks started and stopped with the app."""
        return (self.sampler, self.cleaner, self.binder)


def build_scheduler(settings: SchedulerSettings, runtime: Runtime) -> Scheduler:
    """Wire the scheduler on an open runtime (engine, broker, outbox relay)."""
    relay = runtime.relay
    wake_relay = relay.wake if relay is not None else (lambda: None)
    engine = runtime.engine
    cache = CompiledCache(settings.scheduler_cache_size)
    signal = WakeSignal()
    bindings = TriggerBindings(engine, runtime.broker)
    binder = Periodic("trigger_bindings", bindings.reconcile, settings.scheduler_bindings_interval_seconds)
    retention = timedelta(hours=settings.scheduler_fire_retention_hours)
    backfills = BackfillService(engine, max_slots=settings.scheduler_backfill_max_slots, on_committed=wake_relay)
    return Scheduler(
        settings=settings,
        engine=engine,
        service=ScheduleService(
            engine,
            cache,
            signal,
            max_paused_records=settings.scheduler_max_missed_records,
            on_triggers_changed=binder.poke,
        ),
        fire_loop=FireLoop(
            engine,
            settings,
            cache,
            signal,
            dispatcher=FireDispatcher(
                engine,
                outbox,
                amqp_url=settings.amqp_url.get_secret_value(),
                service=settings.service_name,
                lease_seconds=settings.scheduler_publish_lease_seconds,
                coalesce_seconds=settings.scheduler_dispatch_coalesce_ms / 1000,
            ),
            on_committed=wake_relay,
        ),
        sampler=Periodic("state_sample", lambda: sample_states(engine), settings.scheduler_stats_interval_seconds),
        cleaner=Periodic(
            "retention_cleanup", lambda: cleanup(engine, retention), settings.scheduler_cleanup_interval_seconds
        ),
        binder=binder,
        bindings=bindings,
        backfills=backfills,
        executions=ExecutionEventsHandler(engine, backfills, grace_seconds=settings.scheduler_running_grace_seconds),
        triggers=TriggerEventsHandler(engine, on_committed=wake_relay),
        signal=signal,
        cache=cache,
    )
