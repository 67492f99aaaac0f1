"""Checking a whole submission, all or nothing: every event is checked, the first refusal decides.

Two steps, because the second needs the registered schemas of the types the first one found:
:func:`check_envelopes` (envelope, producer, storability) and :func:`check_data` (data against the
platform's or the registered schema). Each raises one :class:`~.errors.EventRejected` naming the
first field at fault as the caller sent it, with every refusal in ``details``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from automation_contracts import CloudEvent
from automation_contracts.schema_safety import CompiledSchema
from automation_event_gateway.domain.binding import Submission
from automation_event_gateway.domain.envelope import check_producer, parse_event
from automation_event_gateway.domain.errors import EventRejected
from automation_event_gateway.domain.schemas import validate_data


def _collect(submission: Submission, check: Callable[[int], CloudEvent]) -> list[CloudEvent]:
    events: list[CloudEvent] = []
    refusals: list[EventRejected] = []
    for index in range(len(submission.items)):
        try:
            events.append(check(index))
        except EventRejected as exc:
            refusals.append(exc.relocated(submission.field(index, exc.field)))
    if refusals:
        first = refusals[0]
        raise EventRejected(first.reason, first.message, first.field, tuple(refusals))
    return events


def check_envelopes(submission: Submission, *, is_admin: bool) -> list[CloudEvent]:
    """The submission's events, their envelopes checked and their producer allowed."""

    def check(index: int) -> CloudEvent:
        event = parse_event(submission.items[index])
        check_producer(event, is_admin=is_admin)
        return event

    return _collect(submission, check)


def check_data(submission: Submission, events: list[CloudEvent], validators: Mapping[str, CompiledSchema]) -> None:
    """Check every event's data against its platform schema or its registered type's schema."""

    def check(index: int) -> CloudEvent:
        event = events[index]
        validate_data(event, validators.get(event.type))
        return event

    _collect(submission, check)
