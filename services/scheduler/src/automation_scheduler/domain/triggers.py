"""Event triggers: topic patterns, ``where`` conditions on dotted paths, and the platform-type guard.

A trigger's ``type`` is an AMQP topic pattern over event types (words separated by dots; ``*`` is
exactly one word, ``#`` zero or more), matched here exactly as RabbitMQ matches the binding, so the
queue's bindings and the in-process check agree. ``where`` conditions read dotted paths into the
event (``data.site``, ``data.items.0.sku``: a numeric part indexes a list):

- ``eq`` / ``ne``: equal / not equal to ``value`` (JSON equality: ``1`` is not ``true``, ``1`` equals
  ``1.0``); a missing path is not equal to anything.
- ``in``: equal to one of ``value`` (a list).
- ``exists``: the path is present (``value`` null or true) or absent (false).

Events the platform itself produces (``job.*``, ``execution.*``, ``run.*``, ``browser.*``) never trigger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from automation_contracts import PLATFORM_EVENT_PREFIXES

_MISSING = object()


def is_platform_type(event_type: str) -> bool:
    """Whether an event type (a routing key) is one the platform produces itself."""
    return event_type.split(".", 1)[0] in PLATFORM_EVENT_PREFIXES


def pattern_head(pattern: str) -> str | None:
    """A pattern's first word when it is a literal (every match starts with it), else None."""
    head = pattern.split(".", 1)[0]
    return None if head in ("*", "#") else head


def bindable(pattern: str) -> bool:
    """Whether a pattern may be bound at all: one whose first word is a platform prefix matches only
    platform events, which never trigger."""
    head = pattern_head(pattern)
    return head is None or head not in PLATFORM_EVENT_PREFIXES


@lru_cache(maxsize=4096)
def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: ``*`` is exactly one word, ``#`` zero or more words."""
    return _match(_words(pattern), _words(routing_key))


@lru_cache(maxsize=65536)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


def resolve(document: Any, path: str) -> Any:
    """The value at a dotted path, or a sentinel (see :func:`present`) when the path does not exist."""
    current = document
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def present(value: Any) -> bool:
    """Whether :func:`resolve` found something (null included)."""
    return value is not _MISSING


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 equals 1.0, containers compare deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(v, right[k]) for k, v in left.items())
    return type(left) is type(right) and bool(left == right)


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``where`` condition."""

    path: str
    op: str
    value: Any = None

    def holds(self, event: Mapping[str, Any]) -> bool:
        found = resolve(event, self.path)
        if self.op == "exists":
            return present(found) is (self.value is not False)
        if not present(found):
            return self.op == "ne"
        if self.op == "eq":
            return json_equal(found, self.value)
        if self.op == "ne":
            return not json_equal(found, self.value)
        if self.op == "in":
            return isinstance(self.value, list) and any(json_equal(found, v) for v in self.value)
        return False


@dataclass(frozen=True, slots=True)
class Trigger:
    """One stored trigger of one job."""

    position: int
    pattern: str
    conditions: tuple[Condition, ...] = ()
    max_per_minute: int | None = None

    def matches(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Whether an event (its envelope as a JSON object) fires this trigger."""
        if is_platform_type(event_type) or not topic_matches(self.pattern, event_type):
            return False
        return all(condition.holds(event) for condition in self.conditions)

    @classmethod
    def from_row(
        cls, position: int, pattern: str, conditions: Sequence[Mapping[str, Any]], max_per_minute: int | None
    ) -> Trigger:
        return cls(
            position=position,
            pattern=pattern,
            conditions=tuple(Condition(str(c["path"]), str(c["op"]), c.get("value")) for c in conditions),
            max_per_minute=max_per_minute,
        )


def first_match(triggers: Sequence[Trigger], event_type: str, event: Mapping[str, Any]) -> Trigger | None:
    """The first of a job's triggers that the event fires (one run per job and event, whatever the count)."""
    for trigger in sorted(triggers, key=lambda t: t.position):
        if trigger.matches(event_type, event):
            return trigger
    return None
