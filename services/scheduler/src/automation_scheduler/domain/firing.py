"""Run identities and run parameters.

Every run the scheduler requests has a deterministic execution id, so a replay of the same fire (a
redelivery, a crashed replica's outbox row published twice, a second backfill of the same slot) is
recognised downstream:

- a scheduled slot: ``uuid5(NAMESPACE, "<job_id>:<nominal time, UTC ISO>")``;
- a backfilled slot: ``uuid5(NAMESPACE, "<job_id>:<nominal time, UTC ISO>:backfill")``;
- an event-triggered run: ``uuid5(NAMESPACE, "<job_id>:event:<event id>")``.

Run parameters are resolved by :mod:`automation_contracts.parameters`, the rules job-api applies to
manual runs: a scheduled or backfilled run gets the defaults of the job's ``parameters`` schema (nested
ones too), an event-triggered run the event data's values of the parameters the schema declares, with
defaults for the rest; either is validated against the schema before it is queued.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from automation_contracts import parameters

EXECUTION_NAMESPACE = uuid.UUID("5f1c1a52-7c1e-4d43-9a3e-3b7f4b1e2a60")
"""Namespace of the execution ids the scheduler derives."""


def _slot_key(job_id: uuid.UUID, nominal_time: datetime) -> str:
    if nominal_time.tzinfo is None:
        raise ValueError("nominal_time must be timezone-aware")
    return f"{job_id}:{nominal_time.astimezone(UTC).isoformat()}"


def execution_id_for(job_id: uuid.UUID, nominal_time: datetime) -> uuid.UUID:
    """The deterministic execution id of a scheduled run: the same slot always maps to the same id."""
    return uuid.uuid5(EXECUTION_NAMESPACE, _slot_key(job_id, nominal_time))


def backfill_execution_id(job_id: uuid.UUID, nominal_time: datetime) -> uuid.UUID:
    """The execution id of a backfilled slot (distinct from the slot's scheduled run)."""
    return uuid.uuid5(EXECUTION_NAMESPACE, f"{_slot_key(job_id, nominal_time)}:backfill")


def event_execution_id(job_id: uuid.UUID, event_id: str) -> uuid.UUID:
    """The execution id of the run an event fires for a job."""
    return uuid.uuid5(EXECUTION_NAMESPACE, f"{job_id}:event:{event_id}")


def default_parameters(parameters_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a run nobody gives any to (scheduled, backfilled): the schema's defaults, validated.

    Raises :class:`~automation_contracts.ContractError` naming the place in the schema to fix
    (``parameters.properties.site.default``: a required parameter without a default, or a default its
    own schema refuses).
    """
    return parameters.resolve_defaults(parameters_schema)


def event_parameters(parameters_schema: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """The parameters of an event-triggered run: the event's data is the input.

    Of the event's ``data`` (when it is an object), the entries named like a parameter the schema
    declares (top-level ``properties``) are given; the schema's defaults fill the rest; the result is
    validated. Other data stays readable as ``${{ event.data.<path> }}``. Raises
    :class:`~automation_contracts.ContractError` naming ``parameters.<name>``.
    """
    declared = parameters.declared_names(parameters_schema)
    given = {k: v for k, v in data.items() if k in declared} if isinstance(data, Mapping) else {}
    return parameters.resolve(parameters_schema, given)
