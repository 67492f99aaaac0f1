"""The Celery 5 app of the benchmark: one no-op task that notes when its body started.

Loaded by the worker (``celery -A bench_celery_app worker``) and by the benchmark, which uses the same
app to build task messages in Celery's own protocol-2 format. Two configurations, chosen by the worker's
environment:

- **no-op** (``BENCH_CELERY_BACKEND`` unset): Celery's defaults. Result backend off, results ignored,
  acknowledged before the body runs, classic queue: what Celery keeps of a task once it ran is nothing.
- **with history** (``BENCH_CELERY_BACKEND`` a ``db+postgresql+psycopg://`` URL): what the platform
  keeps, as close as Celery's own settings come. Every task's state in PostgreSQL through Celery's
  database result backend (``STARTED`` before the body, ``task_track_started``, then ``SUCCESS``),
  acknowledged only after the body ran and its result was stored (``task_acks_late``), a task whose
  worker process died requeued (``task_reject_on_worker_lost``), on a quorum queue.

Either way the task appends ``<tag> <requested_at> <started_at>`` to a file per worker process,
line-buffered, so the benchmark can compute publish -> start latency while the worker runs.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO

from celery import Celery  # type: ignore[import-untyped]

TASK_NAME = "bench.noop"
BROKER_ENV = "BENCH_CELERY_BROKER"
OUT_ENV = "BENCH_CELERY_OUT"
BACKEND_ENV = "BENCH_CELERY_BACKEND"

app = Celery("bench", broker=os.environ.get(BROKER_ENV, "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if backend := os.environ.get(BACKEND_ENV):
    app.conf.update(
        result_backend=backend,
        task_ignore_result=False,
        task_track_started=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue_type="quorum",
    )

_files: dict[int, IO[str]] = {}
_lock = threading.Lock()


def _out() -> IO[str]:
    """This process's record file (prefork children each get their own)."""
    pid = os.getpid()
    file = _files.get(pid)
    if file is None:
        with _lock:
            file = _files.get(pid)
            if file is None:
                file = (Path(os.environ[OUT_ENV]) / f"{pid}.txt").open("a", buffering=1)
                _files[pid] = file
    return file


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]  # celery is untyped
def noop(tag: str, requested_at: float) -> None:
    """Do nothing but note when this body started."""
    started = time.time()
    _out().write(f"{tag} {requested_at!r} {started!r}\n")
