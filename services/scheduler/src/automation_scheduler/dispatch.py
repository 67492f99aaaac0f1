"""Publishing committed fires at their nominal time, from memory.

The fire loop claims the schedules due within the next ``AUTOMATION_SCHEDULER_LOOKAHEAD_MS``, records
their fires and writes each ``run.requested`` to the outbox in one transaction, and after the commit
hands the messages to the :class:`FireDispatcher`. The dispatcher holds them in a heap by due time,
sleeps until the earliest one, publishes every message that is due in one pipelined batch with
confirms (:meth:`~automation_messaging.Publisher.publish_many`), and deletes the published outbox
rows in batches a little later. A fire is therefore published at its time, not when a relay next
polls, and the work of deciding it is done before its time.

The outbox rows are the crash-safe copy: they are written with ``available_at`` = the publish time
plus ``AUTOMATION_SCHEDULER_PUBLISH_LEASE_SECONDS``, so no relay touches them while this process is
expected to publish them. If the process dies, any replica's relay publishes what it left once the
lease has passed (late by the lease, never lost). A message whose lease is half gone before the
dispatcher gets to it (a broker stall) is left to the relays too, so the two never race for the same
row in normal operation; the one window for a duplicate is the one every outbox has (published,
then killed before the delete), and the duplicate carries the same execution id.

The dispatcher runs on a thread of its own, with its own event loop and its own AMQP connection, so a
publish is not held up by a fire-loop round computing on the main loop: when its time comes, the
thread waits at most the interpreter's switch interval (set to 1 ms while a dispatcher runs) for the
interpreter. The published rows are deleted by a task on the main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import aio_pika
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_core.logging import get_logger
from automation_messaging.broker import Publisher, RawMessage
from automation_messaging.outbox import delete_rows
from automation_scheduler import metrics

log = get_logger(__name__)
DELETE_INTERVAL_SECONDS = 0.1
"""How long published rows wait to be deleted together (one DELETE per interval)."""
SWITCH_INTERVAL_SECONDS = 0.001
"""The interpreter's thread switch interval while a dispatcher runs (Python's default is 5 ms): how
long the dispatcher thread may wait for the interpreter when its publish time comes while the fire
loop is computing."""
CONNECT_RETRY_SECONDS = 1.0
MAX_UNCONFIRMED = 10_000
"""Messages sent and not yet confirmed before the dispatcher waits for the broker."""


@dataclass(order=True, slots=True)
class Dispatch:
    """One committed message waiting for its time."""

    due: float
    """When to publish it, on the event loop's clock."""
    row_id: int = field(compare=False)
    """Its outbox row."""
    message: RawMessage = field(compare=False)
    late_by: float = field(default=0.0, compare=False)
    """How far ``due`` already is past the slot's own time (a late slot is published at once)."""


class FireDispatcher:
    """Publishes committed fires at their time and clears their outbox rows; one per fire loop.

    :meth:`add`, :meth:`start`, :meth:`stop` and :meth:`check` are called on the service's event loop;
    the heap, the timers and the publishing live on the dispatcher's thread.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        *,
        amqp_url: str,
        service: str,
        lease_seconds: float,
        coalesce_seconds: float = 0.0,
        max_batch: int = 1000,
    ) -> None:
        self._engine = engine
        self._table = table
        self._amqp_url = amqp_url
        self._service = service
        self._lease = lease_seconds
        self._coalesce = coalesce_seconds
        self._max_batch = max_batch
        self._heap: list[tuple[float, int, Dispatch]] = []
        self._seq = itertools.count()
        self._published_rows: list[int] = []
        self._confirming: set[asyncio.Future[None]] = set()
        self._unconfirmed = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._deleter: asyncio.Task[None] | None = None
        self._stopping = False
        self._switch_interval = sys.getswitchinterval()
        self.published = 0
        """Messages this dispatcher has published (confirmed) since it was built."""
        self.left_to_relay = 0
        """Messages it gave up on (failed publish, or lease half gone): the relays publish their rows."""

    @property
    def pending(self) -> int:
        """Messages waiting for their time."""
        return len(self._heap)

    # --- the service's loop ------------------------------------------------------------------------

    def add(self, items: list[Dispatch]) -> None:
        """Queue committed messages for their time (called on the service's loop)."""
        if not items:
            return
        if self._loop is None or self._loop.is_closed():
            self.left_to_relay += len(items)
            metrics.DISPATCH_LEFT.labels("error").inc(len(items))
            return
        self._loop.call_soon_threadsafe(self._push, items)

    async def start(self) -> None:
        self._stopping = False
        self._main = asyncio.get_running_loop()
        self._ready.clear()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_SECONDS))
        self._thread = threading.Thread(target=self._thread_main, name="scheduler-fire-dispatch", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        self._deleter = asyncio.create_task(self._delete_loop(), name="scheduler-fire-dispatch-cleanup")

    async def stop(self, grace_seconds: float) -> None:
        """Publish what is queued, each at its time (all of it is due within the lookahead), within
        ``grace_seconds``; then stop. What is still queued then is left to the relays."""
        self._stopping = True
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                self._loop.call_soon_threadsafe(self._poke)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, grace_seconds or None)
            if self._thread.is_alive():
                log.warning("fire_dispatch_stop_timed_out", left=len(self._heap))
            self._thread = None
        if self._deleter is not None:
            self._deleter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deleter
            self._deleter = None
        with contextlib.suppress(Exception):
            await self._delete_published()
        self.left_to_relay += len(self._heap)
        self._heap.clear()
        sys.setswitchinterval(self._switch_interval)

    async def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("fire dispatcher is not running")

    def _confirmed_rows(self, rows: list[int]) -> None:
        self._published_rows.extend(rows)

    async def _delete_loop(self) -> None:
        while True:
            await asyncio.sleep(DELETE_INTERVAL_SECONDS)
            try:
                await self._delete_published()
            except Exception as exc:  # noqa: BLE001 - retried next interval; a relay may republish meanwhile
                log.warning("fire_dispatch_cleanup_failed", error=repr(exc))

    async def _delete_published(self) -> None:
        if not self._published_rows:
            return
        rows, self._published_rows = self._published_rows, []
        try:
            async with self._engine.begin() as conn:
                await delete_rows(conn, self._table, rows)
        except BaseException:
            self._published_rows.extend(rows)
            raise

    # --- the dispatcher's thread -------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            self._ready.set()  # never leave start() waiting
            loop.close()

    def _push(self, items: Iterable[Dispatch]) -> None:
        earliest = self._heap[0][0] if self._heap else None
        for item in items:
            heapq.heappush(self._heap, (item.due, next(self._seq), item))
        metrics.DISPATCH_PENDING.set(len(self._heap))
        if self._heap and (earliest is None or self._heap[0][0] < earliest):
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _serve(self) -> None:
        self._wake = asyncio.Event()
        connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._ready.set()
        try:
            while connection is None and not self._stopping:
                try:
                    connection = await aio_pika.connect_robust(
                        self._amqp_url, client_properties={"connection_name": f"{self._service}-dispatch"}, timeout=10
                    )
                except (OSError, aio_pika.exceptions.AMQPError) as exc:
                    log.warning("fire_dispatch_connect_failed", error=str(exc))
                    await asyncio.sleep(CONNECT_RETRY_SECONDS)
            if connection is None:
                return
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._run(Publisher(channel, self._service))
            if self._confirming:
                await asyncio.wait(self._confirming)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def _run(self, publisher: Publisher) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        last = float("-inf")
        while True:
            wake.clear()
            if not self._heap:
                if self._stopping:
                    return
                await wake.wait()
                continue
            # Never before its time (stopping too). Under a high rate, batches are at least the coalescing
            # window apart: a batch costs about as much as several messages, so this bounds the cost per
            # fire at the price of at most that window of lateness; at a low rate, a fire goes at its time.
            at = max(self._heap[0][0], last + self._coalesce)
            delay = at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
                continue
            last = loop.time()
            batch = self._take_due(last)
            try:
                await self._publish(publisher, batch, loop)
            except Exception as exc:  # noqa: BLE001 - the relays publish what this could not
                self.left_to_relay += len(batch)
                metrics.DISPATCH_LEFT.labels("error").inc(len(batch))
                log.warning("fire_dispatch_failed", messages=len(batch), error=repr(exc))

    def _take_due(self, until: float) -> list[Dispatch]:
        batch: list[Dispatch] = []
        heap = self._heap
        while heap and heap[0][0] <= until and len(batch) < self._max_batch:
            batch.append(heapq.heappop(heap)[2])
        metrics.DISPATCH_PENDING.set(len(heap))
        return batch

    async def _publish(self, publisher: Publisher, batch: list[Dispatch], loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        fresh = [item for item in batch if now < item.due + self._lease / 2]
        if len(fresh) < len(batch):
            stale = len(batch) - len(fresh)
            self.left_to_relay += stale
            metrics.DISPATCH_LEFT.labels("lease").inc(stale)
            log.warning("fire_dispatch_lease_expiring", messages=stale)
        if not fresh:
            return
        while self._unconfirmed >= MAX_UNCONFIRMED and self._confirming:
            await asyncio.wait(self._confirming, return_when=asyncio.FIRST_COMPLETED)
        for item in fresh:
            metrics.FIRE_LATENESS.observe(max(now - item.due, 0.0) + item.late_by)
        confirms = await publisher.send_many([item.message for item in fresh])
        # The confirms come back while the next batches go out.
        self._unconfirmed += len(fresh)
        task = asyncio.ensure_future(self._settle(fresh, confirms))
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _settle(self, batch: list[Dispatch], confirms: asyncio.Future[list[BaseException | None]]) -> None:
        """Hand a sent batch's confirmed rows to the main loop for deletion; a failed message is left to
        the relays."""
        try:
            results: list[BaseException | None] = await confirms
        except Exception as exc:  # noqa: BLE001 - e.g. the confirms timed out: the relays publish them
            results = [exc] * len(batch)
        finally:
            self._unconfirmed -= len(batch)
        done: list[int] = []
        failed = 0
        for item, error in zip(batch, results, strict=True):
            if error is None:
                done.append(item.row_id)
            else:
                failed += 1
                if failed == 1:
                    log.warning("fire_publish_failed", execution_id=item.message.message_id, error=repr(error))
        if done and self._main is not None and not self._main.is_closed():
            self._main.call_soon_threadsafe(self._confirmed_rows, done)
        self.published += len(done)
        if failed:
            self.left_to_relay += failed
            metrics.DISPATCH_LEFT.labels("error").inc(failed)
