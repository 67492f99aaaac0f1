"""Run identities and default parameters.

Every run the scheduler requests has a deterministic execution id, so a replay of the same fire (a
redelivery, a crashed replica's outbox row published twice, a second backfill of the same slot) is
recognised downstream:

- a scheduled slot: ``uuid5(NAMESPACE, "<job_id>:<nominal time, UTC ISO>")``;
- a backfilled slot: ``uuid5(NAMESPACE, "<job_id>:<nominal time, UTC ISO>:backfill")``;
- an event-triggered run: ``uuid5(NAMESPACE, "<job_id>:event:<event id>")``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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


def default_parameters(parameters_schema: dict[str, Any]) -> dict[str, Any]:
    """Run parameters from the job's parameters JSON Schema: each ``properties.<name>.default``."""
    properties = parameters_schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: prop["default"] for name, prop in properties.items() if isinstance(prop, dict) and "default" in prop}
