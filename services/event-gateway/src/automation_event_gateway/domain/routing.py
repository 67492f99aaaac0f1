"""Routing keys and AMQP topic patterns.

An event type is its routing key on ``automation.events``, so it must be one: dot-separated words of
ASCII letters, digits, ``_`` and ``-`` (no ``*`` or ``#``), at most 255 bytes. A topic pattern is the
same with ``*`` (exactly one word) and ``#`` (zero or more words) allowed as whole words, as in an
AMQP topic binding.

A pattern becomes one regular expression that both Python's :mod:`re` and PostgreSQL's ``~`` accept.
It is matched against the type with a leading dot (``"." + type``): every token then owns the dot in
front of it, so ``#`` matching zero words leaves no dangling separator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ROUTING_KEY_BYTES = 255
WORD = re.compile(r"[A-Za-z0-9_-]+")
ROUTING_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
ONE_WORD = r"\.[^.]+"
ANY_WORDS = r"(?:\.[^.]+)*"


def routing_key_problem(value: str) -> str | None:
    """Why ``value`` is not a valid routing key, or None when it is one."""
    if not value:
        return "must not be empty"
    if len(value.encode()) > MAX_ROUTING_KEY_BYTES:
        return f"must be at most {MAX_ROUTING_KEY_BYTES} bytes"
    if "*" in value or "#" in value:
        return "must not contain '*' or '#' (it is a routing key, not a pattern)"
    if not ROUTING_KEY.fullmatch(value):
        return "must be dot-separated words of letters, digits, '_' and '-' (e.g. inventory.synced)"
    return None


def is_routing_key(value: str) -> bool:
    """Whether ``value`` can be an event type (and so a routing key)."""
    return routing_key_problem(value) is None


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """An exact type or an AMQP topic pattern (``job.*``, ``inventory.#``, ``#``)."""

    text: str
    regex: str
    """Matches ``"." + type`` in full (anchored with ``^``/``$``); PostgreSQL- and Python-compatible."""

    @property
    def is_exact(self) -> bool:
        """True when the pattern has no wildcard (compare with ``=``, an index can serve it)."""
        return "*" not in self.text and "#" not in self.text

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Parse a pattern; ValueError when it is not one."""
        if not text:
            raise ValueError("must not be empty")
        if len(text.encode()) > MAX_ROUTING_KEY_BYTES:
            raise ValueError(f"must be at most {MAX_ROUTING_KEY_BYTES} bytes")
        parts: list[str] = []
        for word in text.split("."):
            if word == "*":
                parts.append(ONE_WORD)
            elif word == "#":
                parts.append(ANY_WORDS)
            elif WORD.fullmatch(word):
                parts.append(r"\." + re.escape(word))
            else:
                raise ValueError(
                    f"{word!r} is not a word: use letters, digits, '_', '-', or a whole-word '*' or '#'"
                    if word
                    else "empty word (leading, trailing or doubled '.')"
                )
        return cls(text=text, regex="^" + "".join(parts) + "$")

    def matches(self, event_type: str) -> bool:
        """Whether ``event_type`` matches, exactly as the SQL filter and an AMQP binding would."""
        return re.fullmatch(self.regex, "." + event_type) is not None
