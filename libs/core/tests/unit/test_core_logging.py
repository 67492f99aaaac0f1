"""Log records of the libraries: aio-pika's noise on a broker restart is a warning, not an error."""

from __future__ import annotations

import logging

from automation_core.logging import demote_broker_reconnect_noise


class _RobustChannel:
    async def _on_close(self) -> None: ...


class _OneShotCallback:
    def __init__(self) -> None:
        self.callback = _RobustChannel()._on_close

    def __repr__(self) -> str:
        return f"<OneShotCallback: cb={self.callback!r}>"


def _record(name: str, level: int, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "Callback %r error: %s: %s", args, None)


def test_a_robust_channel_that_cannot_reopen_yet_is_a_warning() -> None:
    record = _record("aio_pika.tools", logging.ERROR, _OneShotCallback(), "ChannelInvalidStateError", "No transport")
    assert "RobustChannel._on_close" in record.getMessage()
    assert demote_broker_reconnect_noise(record) is True, "kept"
    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")


def test_aiormq_reconnecting_is_a_warning() -> None:
    closed = logging.LogRecord(
        "aiormq.connection",
        logging.ERROR,
        __file__,
        1,
        'Unexpected connection close from remote "%s", Connection.Close(reply_code=%r, reply_text=%r)',
        ("amqp://guest:******@127.0.0.1:5672/", 320, "CONNECTION_FORCED"),
        None,
    )
    refused = logging.LogRecord(
        "aiormq.connection", logging.ERROR, __file__, 1, "error when creating transport: %r", (OSError(111),), None
    )
    for record in (closed, refused):
        demote_broker_reconnect_noise(record)
        assert record.levelno == logging.WARNING


def test_other_errors_keep_their_level() -> None:
    other_callback = _record("aio_pika.tools", logging.ERROR, object(), "RuntimeError", "boom")
    other_logger = _record("aio_pika.robust_connection", logging.ERROR, _OneShotCallback(), "X", "y")
    for record in (other_callback, other_logger):
        assert demote_broker_reconnect_noise(record) is True
        assert record.levelno == logging.ERROR
