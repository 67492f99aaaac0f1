"""structlog configuration: JSON lines on stdout (console rendering in a terminal).

Every line carries ``service``, ``level``, ``timestamp``, the current ``trace_id``/``span_id`` when a span
is active, and whatever ids were bound with :func:`bind_context` (e.g. ``execution_id``, ``job_id``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace


def _add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and route stdlib logging (uvicorn, aio-pika, alembic) through it."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        _ServiceAdder(service),
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # A logger builds its processor chain once, at its first call: without the cache every call
        # rebuilds it (tens of microseconds per line, even for a level that is filtered out).
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(demote_broker_reconnect_noise)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


RECONNECT_NOISE: tuple[tuple[str, str], ...] = (
    ("aio_pika.tools", "RobustChannel._on_close"),
    ("aiormq.connection", "Unexpected connection close from remote"),
    ("aiormq.connection", "error when creating transport"),
)
"""(logger, text) of the ERROR records aio-pika and aiormq write while a robust connection reconnects."""


def demote_broker_reconnect_noise(record: logging.LogRecord) -> bool:
    """aio-pika and aiormq log at ERROR when the broker closes the connection, while they try to
    reconnect, and when a robust channel cannot reopen yet (mosquito/aio-pika#668). They reconnect on
    their own; the services say so (``broker_connection_lost``, ``broker_reconnected``, the
    ``automation_broker_connected`` gauge). A broker restart is no error of ours: kept, as warnings."""
    if record.levelno == logging.ERROR and any(
        record.name == name and text in record.getMessage() for name, text in RECONNECT_NOISE
    ):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


class _ServiceAdder:
    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", self.service)
        return event_dict


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; event names are stable snake_case strings."""
    return structlog.get_logger(name)


def bind_context(**values: Any) -> None:
    """Bind ids (execution_id, job_id, ...) to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**{k: str(v) for k, v in values.items() if v is not None})


def clear_context() -> None:
    """Forget ids bound with :func:`bind_context`."""
    structlog.contextvars.clear_contextvars()
