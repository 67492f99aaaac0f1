"""A worker-less consumer that timestamps every message arriving on one queue (a benchmark process).

``python bench_consumer.py --amqp URL --queue NAME --mode platform|celery --until EPOCH --out FILE``

It consumes with auto-ack until the wall clock reaches ``--until``, taking ``time.time()`` as the arrival
time of each delivery before anything else and keeping the raw body; after the window it parses what
it kept and writes one JSON document to ``--out``:

- ``platform`` (``run.requested`` CloudEvents on ``executor.runs``): per first arrival of an execution
  id, the nominal time (``data.scheduled_for``), the fire transaction's time (``data.requested_at``),
  the time the event was built inside that transaction (CloudEvent ``time``), the arrival time and the
  kind (``e`` for ``@every``, ``c`` for cron);
- ``celery`` (Celery protocol 2 task messages): the due time and send time the benchmark's beat
  scheduler stamps into headers ``x-bench-due`` / ``x-bench-sent``, and the arrival time.

Repeated ids are counted as ``duplicates`` and otherwise ignored. The consumer runs in its own process
so the benchmark's other work never delays a timestamp, and it consumes through aiormq (the protocol
layer under aio-pika) and parses nothing during the window: it shares the machine with what it
measures, and the less CPU it takes the less it disturbs it (both sides pay the same).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage


class Recorder:
    """Collects one row of timestamps per distinct message id."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: set[str] = set()
        self.duplicates = 0
        self.nominal: list[float] = []
        self.requested: list[float] = []
        self.built: list[float] = []
        self.published: list[float] = []
        self.arrival: list[float] = []
        self.kind: list[str] = []
        self.raw: list[tuple[float, DeliveredMessage]] = []

    def on_message(self, message: DeliveredMessage) -> None:
        self.raw.append((time.time(), message))

    def parse(self) -> None:
        """Read what arrived (after the window, so parsing costs the measured system nothing)."""
        for arrived, message in self.raw:
            if self.mode == "platform":
                headers = message.header.properties.headers or {}
                published = headers.get("x-published-at")
                self._platform(message.body, arrived, published / 1000 if isinstance(published, int) else None)
            else:
                self._celery(dict(message.header.properties.headers or {}), arrived)
        self.raw.clear()

    def _first(self, message_id: str) -> bool:
        if message_id in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(message_id)
        return True

    def _platform(self, body: bytes, arrived: float, published: float | None) -> None:
        event = json.loads(body)
        if not self._first(event["id"]):
            return
        data = event["data"]
        self.nominal.append(datetime.fromisoformat(data["scheduled_for"]).timestamp())
        self.requested.append(datetime.fromisoformat(data["requested_at"]).timestamp())
        built = datetime.fromisoformat(event["time"]).timestamp()
        self.built.append(built)
        self.published.append(published if published is not None else built)
        self.arrival.append(arrived)
        self.kind.append("e" if str(data["job"]["schedule"]).startswith("@every") else "c")

    def _celery(self, headers: dict[str, Any], arrived: float) -> None:
        if not self._first(str(headers["id"])):
            return
        sent = float(headers["x-bench-sent"])
        self.nominal.append(float(headers["x-bench-due"]))
        self.requested.append(sent)
        self.built.append(sent)
        self.published.append(sent)
        self.arrival.append(arrived)
        self.kind.append("e")

    def result(self) -> dict[str, Any]:
        return {
            "duplicates": self.duplicates,
            "nominal": self.nominal,
            "requested": self.requested,
            "built": self.built,
            "published": self.published,
            "arrival": self.arrival,
            "kind": "".join(self.kind),
        }


async def consume(amqp_url: str, queue_name: str, recorder: Recorder, until: float) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        if recorder.mode == "celery":
            # Declared as kombu declares Celery's default queue, before beat's first send.
            exchange = await channel.declare_exchange(queue_name, aio_pika.ExchangeType.DIRECT, durable=True)
            queue = await channel.declare_queue(queue_name, durable=True)
            await queue.bind(exchange, routing_key=queue_name)
        else:
            queue = await channel.get_queue(queue_name, ensure=True)

        async def on_message(message: DeliveredMessage) -> None:
            recorder.on_message(message)

        raw = await channel.get_underlay_channel()
        ok = await raw.basic_consume(queue.name, on_message, no_ack=True)
        print("consuming", flush=True)  # the parent waits for this line
        await asyncio.sleep(max(0.0, until - time.time()))
        if ok.consumer_tag is not None:
            await raw.basic_cancel(ok.consumer_tag)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--mode", choices=("platform", "celery"), required=True)
    parser.add_argument("--until", type=float, required=True, help="stop at this Unix time")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    recorder = Recorder(args.mode)
    # A collection during the window would hold the interpreter for up to hundreds of milliseconds
    # (the kept deliveries are many small objects) and stamp every message behind it late.
    gc.disable()
    asyncio.run(consume(args.amqp, args.queue, recorder, args.until))
    gc.enable()
    recorder.parse()
    args.out.write_text(json.dumps(recorder.result()))


if __name__ == "__main__":
    main()
