"""Checking one event: its envelope, who may produce it, and whether the history can keep it.

The envelope rules are those of CloudEvents 1.0 (``automation_contracts.CloudEvent`` enforces them)
plus the gateway's own: the type must be a routing key, and the history's keys have bounded sizes.
Every refusal is an :class:`~.errors.EventRejected` naming the attribute at fault.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from automation_contracts import CORE_ATTRIBUTES, EVENT_MODELS, CloudEvent, ContractError
from automation_core.storable import MAX_JSON_DEPTH, check_value
from automation_event_gateway.domain.errors import EventRejected, RejectReason
from automation_event_gateway.domain.routing import routing_key_problem

EXTENSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
MAX_EXTENSION_NAME = 20
MAX_ID_BYTES = 256
MAX_SOURCE_BYTES = 1024
PLATFORM_TYPES = frozenset(EVENT_MODELS)
"""The platform's own message types (their data schemas live in ``proto-schemas/``)."""
RESERVED_NAMESPACES = frozenset({"job", "execution", "browser"})
RESERVED_TYPES = frozenset({"run.requested"})


def is_extension_name(name: str) -> bool:
    """The CloudEvents naming rule: 1 to 20 lower-case ASCII letters and digits."""
    return 0 < len(name) <= MAX_EXTENSION_NAME and set(name) <= EXTENSION_CHARS


def is_reserved_type(event_type: str) -> bool:
    """Types only the platform's services may produce: ``run.requested``, ``job.*``, ``execution.*``, ``browser.*``."""
    return (
        event_type in PLATFORM_TYPES
        or event_type in RESERVED_TYPES
        or event_type.split(".", 1)[0] in RESERVED_NAMESPACES
    )


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def json_kind(value: object) -> str:
    """What a decoded JSON value is, for a message: ``an object``, ``an array``, ``a string``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def parse_event(raw: object) -> CloudEvent:
    """A CloudEvent from a decoded JSON object, or EventRejected naming the attribute at fault."""
    if not isinstance(raw, Mapping):
        raise EventRejected(RejectReason.MALFORMED, f"an event must be a JSON object, not {json_kind(raw)}")
    for name, value in raw.items():
        if name in CORE_ATTRIBUTES:
            continue
        if not is_extension_name(name):
            raise EventRejected(
                RejectReason.INVALID_ENVELOPE,
                "not a CloudEvents attribute; extension names are 1 to 20 lower-case letters and digits",
                name,
            )
        if value is not None and not isinstance(value, str | int):
            raise EventRejected(
                RejectReason.INVALID_ENVELOPE, "an extension attribute must be a string, integer or boolean", name
            )
    try:
        event = CloudEvent.from_dict(raw)
    except ContractError as exc:
        raise EventRejected(RejectReason.INVALID_ENVELOPE, _clean(exc.reason), exc.path) from exc
    problem = routing_key_problem(event.type)
    if problem is not None:
        raise EventRejected(RejectReason.INVALID_ENVELOPE, problem, "type")
    if event.data_base64 is not None:
        try:
            base64.b64decode(event.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EventRejected(RejectReason.INVALID_ENVELOPE, "must be valid base64", "data_base64") from exc
    check_storable(event)
    return event


def check_producer(event: CloudEvent, *, is_admin: bool) -> None:
    """Refuse platform-owned types from anyone but the admin, and unknown types in their namespaces."""
    if not is_reserved_type(event.type):
        return
    if not is_admin:
        raise EventRejected(
            RejectReason.FORBIDDEN_TYPE,
            f"{event.type!r} is a platform event type; only the platform's services (admin) may produce it",
            "type",
        )
    if event.type not in PLATFORM_TYPES:
        raise EventRejected(
            RejectReason.INVALID_ENVELOPE,
            f"{event.type!r} is in a platform namespace but is not a platform event type",
            "type",
        )


def check_storable(event: CloudEvent) -> None:
    """Refuse what PostgreSQL cannot keep: NUL characters, non-finite numbers, too-deep data, oversized keys."""
    if len(event.id.encode()) > MAX_ID_BYTES:
        raise EventRejected(RejectReason.UNSTORABLE, f"must be at most {MAX_ID_BYTES} bytes", "id")
    if len(event.source.encode()) > MAX_SOURCE_BYTES:
        raise EventRejected(RejectReason.UNSTORABLE, f"must be at most {MAX_SOURCE_BYTES} bytes", "source")
    attributes: dict[str, Any] = event.model_dump(exclude={"time"})
    attributes.pop("data", None)
    check_value(attributes, "", max_depth=2, refuse=_unstorable)  # extension values are scalars
    check_value(event.data, "data", max_depth=MAX_JSON_DEPTH, refuse=_unstorable)


def _unstorable(message: str, field: str | None) -> Exception:
    return EventRejected(RejectReason.UNSTORABLE, message, field or "")
