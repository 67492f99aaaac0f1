"""Message types, their models and schemas, and the functions producers and consumers call.

Producers ``build_event``; consumers ``validate_event`` and then ``parse_data``. Both raise
:class:`ContractError` naming the field at fault, which the consumer runner turns into a dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

from jsonschema import ValidationError as SchemaError
from jsonschema.exceptions import best_match
from pydantic import BaseModel
from pydantic import ValidationError as ModelError

from automation_contracts.browser import BrowserResult, BrowserTask
from automation_contracts.envelope import CORE_ATTRIBUTES, CloudEvent
from automation_contracts.errors import ContractError, from_validation_error, join_path
from automation_contracts.executions import (
    CancelExecution,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionLog,
    ExecutionStarted,
    ExecutionSucceeded,
    RunRequested,
)
from automation_contracts.jobs import JobChanged, JobDeleted
from automation_contracts.schema_safety import pattern_search
from automation_contracts.schemas import URN_PREFIX, urn, validator_for

M = TypeVar("M", bound=BaseModel)

EVENT_MODELS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        "job.created": JobChanged,
        "job.updated": JobChanged,
        "job.deleted": JobDeleted,
        "run.requested": RunRequested,
        "execution.started": ExecutionStarted,
        "execution.log": ExecutionLog,
        "execution.succeeded": ExecutionSucceeded,
        "execution.failed": ExecutionFailed,
        "execution.timed_out": ExecutionFailed,
        "execution.cancelled": ExecutionCancelled,
        "execution.cancel": CancelExecution,
        "browser.task": BrowserTask,
        "browser.result": BrowserResult,
    }
)
"""Every platform message type (the CloudEvent ``type`` and routing key) and the model of its ``data``."""


def dataschema_for(event_type: str) -> str | None:
    """The ``dataschema`` URN of a platform message type; None for other (external) types."""
    return urn(event_type) if event_type in EVENT_MODELS else None


def build_event(
    event_type: str,
    *,
    source: str,
    data: BaseModel | Mapping[str, Any],
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    **extensions: str,
) -> CloudEvent:
    """A CloudEvent carrying ``data``: a fresh UUID id and the current UTC time unless given.

    Models are dumped in JSON mode; ``dataschema`` is set for platform types; ``extensions``
    become extension attributes. The envelope is checked (ContractError on a bad attribute);
    ``data`` is not: call :func:`validate_event`.
    """
    clashing = sorted(extensions.keys() & CORE_ATTRIBUTES)
    if clashing:
        raise ContractError(f"{', '.join(clashing)} is a core attribute, not an extension")
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    return CloudEvent.from_dict(
        {
            **extensions,
            "specversion": "1.0",
            "id": id if id is not None else str(uuid.uuid4()),
            "source": source,
            "type": event_type,
            "time": time if time is not None else datetime.now(UTC),
            "subject": subject,
            "datacontenttype": "application/json",
            "dataschema": dataschema_for(event_type),
            "data": payload,
        }
    )


def validate_event(event: CloudEvent) -> None:
    """Check ``event.data`` against the JSON Schema its ``dataschema`` names.

    Without a ``dataschema``, platform types are checked against their own schema; with one, a
    platform type must name its own. External types with no schema of ours have nothing to check
    here (the event-gateway checks those); an unknown ``urn:automation:`` schema is an error.
    Raises ContractError with the path of the best-matching error (``data.job.steps.0.name``).
    """
    expected = dataschema_for(event.type)
    schema_id = event.dataschema if event.dataschema is not None else expected
    if expected is not None and schema_id != expected:
        raise ContractError(f"{schema_id!r} is not the schema of {event.type!r} (expected {expected!r})", "dataschema")
    if schema_id is None or not schema_id.startswith(URN_PREFIX):
        return
    error = best_match(validator_for(schema_id).iter_errors(event.data))
    if error is not None:
        raise ContractError(error.message, join_path("data", _error_path(error)))


def parse_data(event: CloudEvent, model: type[M]) -> M:
    """``event.data`` as ``model``; raises ContractError naming the field at fault (``data.attempt``)."""
    try:
        return model.model_validate(event.data)
    except ModelError as exc:
        raise from_validation_error(exc, event.data, "data") from exc


def _error_path(error: SchemaError) -> list[str | int]:
    """The error's location in the data, down to the missing or unexpected property when there is one."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping) and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in instance]
        path.extend(name for name in missing if error.message.startswith(repr(name)))
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        declared = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extra = [
            name
            for name in instance
            if name not in declared and not any(pattern_search(pattern, name) for pattern in patterns)
        ]
        if len(extra) == 1:
            path.append(extra[0])
    return path
