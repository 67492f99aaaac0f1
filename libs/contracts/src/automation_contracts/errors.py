"""The one exception of the package, and how validation failures become it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class ContractError(Exception):
    """A message does not honour its contract.

    ``reason`` says what is wrong, for people; ``path`` is the dotted path of the field at fault
    (``data.job.steps.0.name``), or ``""`` when the message as a whole is at fault. Consumers
    dead-letter the message with ``str(error)`` as the reason.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason, path)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def join_path(prefix: str, parts: Iterable[str | int]) -> str:
    """Join ``prefix`` and path parts with dots, skipping an empty prefix."""
    return ".".join([prefix, *map(str, parts)] if prefix else map(str, parts))


_UNION_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def from_validation_error(exc: ValidationError, value: Any, prefix: str = "") -> ContractError:
    """Turn a pydantic error into a ContractError on its first error, with a dotted path.

    pydantic's ``loc`` also names union members (``("actions", 0, "goto", "url")``), which are not
    fields of the message; walking ``value`` alongside the location drops them, so the path names
    the data as sent (``actions.0.url``).
    """
    first = exc.errors(include_url=False)[0]
    path = _data_path(first["loc"], value)
    reason = first["msg"]
    if first["type"] in _UNION_TAG_ERRORS:  # the fault is the discriminator field itself
        field = str(first.get("ctx", {}).get("discriminator", "type")).strip("'")
        path.append(field)
        if first["type"] == "union_tag_not_found":  # pydantic: "Unable to extract tag using discriminator"
            reason = f"Field required: {field!r} says which kind of item this is"
    return ContractError(reason, join_path(prefix, path))


def _data_path(loc: Sequence[str | int], value: Any) -> list[str | int]:
    path: list[str | int] = []
    current = value
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, Sequence) and not isinstance(current, str) and isinstance(part, int):
            current = current[part] if 0 <= part < len(current) else None
        elif last and isinstance(current, Mapping):
            current = None  # a missing or unexpected field: name it
        else:
            continue  # a union member's tag, not a field of the data
        path.append(part)
    return path
