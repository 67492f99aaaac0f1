"""Outage: the pauses while a dependency cannot be reached, and what it logs."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from automation_core.errors import Outage


def _outage() -> Outage:
    return Outage(started="thing_unreachable", ended="thing_back", first=0.5, cap=2.0)


def test_pauses_double_to_the_cap_and_the_outage_is_logged_at_its_start_and_end() -> None:
    outage = _outage()
    with capture_logs() as logs:
        pauses = [outage.pause(ConnectionRefusedError(111, "refused")) for _ in range(4)]
        outage.over()
        outage.over()  # nothing more: the outage was over already
    assert pauses == [0.5, 1.0, 2.0, 2.0]
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("thing_unreachable", "warning"),
        ("thing_back", "info"),
    ]
    assert outage.pause(ConnectionResetError()) == 0.5, "a new outage starts from the first pause"


def test_any_other_error_is_raised_again() -> None:
    bug = ValueError("a bug")
    with pytest.raises(ValueError, match="a bug"):
        _outage().pause(bug)


def test_asyncpg_connections_broken_mid_operation_are_an_outage_and_its_other_errors_are_not() -> None:
    import asyncpg

    from automation_core.errors import unreachable_dependency

    broken = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    closed = asyncpg.InterfaceError("connection is closed")
    wrapped = RuntimeError("recording failed")
    wrapped.__cause__ = broken
    assert unreachable_dependency(wrapped) is broken, "found down the chain"
    assert unreachable_dependency(closed) is closed
    assert (
        unreachable_dependency(asyncpg.InterfaceError("cannot perform operation: another operation is in progress"))
        is None
    )
    assert unreachable_dependency(asyncpg.UniqueViolationError("duplicate key")) is None
    assert unreachable_dependency(asyncpg.AdminShutdownError("terminating connection")) is not None, "57P01"
    assert unreachable_dependency(asyncpg.DiskFullError("could not extend file")) is not None, "53100"
    assert unreachable_dependency(asyncpg.OutOfMemoryError("out of memory")) is not None, "53200"
    assert unreachable_dependency(asyncpg.QueryCanceledError("canceling statement")) is None, "57014 is no outage"


def test_an_amqp_channel_whose_connection_is_gone_is_an_outage() -> None:
    import aiormq.exceptions

    from automation_core.errors import unreachable_dependency

    gone = aiormq.exceptions.ChannelInvalidStateError("No active transport in channel")
    assert unreachable_dependency(gone) is gone
    assert unreachable_dependency(aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND - no exchange")) is None
