"""Redacting secret values from log lines, step outputs and results.

A :class:`Redactor` knows every secret value resolved for one execution and replaces each occurrence,
anywhere inside a string, with :data:`REDACTED`. Longer values are replaced first, so a secret that
contains another is hidden whole. A multi-line value (a private key, a certificate) is also redacted
line by line, because output is logged one line at a time: every line of at least
:data:`MIN_LINE_CHARS` characters counts on its own. So are the forms a value takes on its way out
(:func:`encoded_forms`): percent-encoded, as the executor puts a template into a URL (and a server
echoes it in a redirect, an error or a log line), and escaped as in a JSON string (a ``json`` body
echoed back).

Both sides of the child protocol redact: the child before it cuts a line to the line cap (so a cut
cannot leave the start of a secret behind), and the executor again on everything it receives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "***"
MIN_LINE_CHARS = 4
"""Lines of a multi-line secret shorter than this are not redacted on their own (``-----`` and the like)."""


def encoded_forms(value: str) -> set[str]:
    """``value`` as it may appear once encoded: in a URL (``quote``, ``quote_plus``) and in a JSON
    string (escaped, with and without ``ensure_ascii``); only the forms that differ from it."""
    forms = {
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1],
    }
    forms.discard(value)
    return forms


class Redactor:
    """The secret values of one execution, and the replacement of them in text and JSON values."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0
        """Length in characters of the longest value (how much context a cut line needs to be redacted)."""
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Redact ``value`` (and each longer line of it) from now on; empty values are ignored."""
        candidates = {value, value.strip(), *encoded_forms(value)}
        if "\n" in value:
            candidates.update(line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE_CHARS)
        new = {c for c in candidates if c and c not in self._values}
        if not new:
            return
        self._values |= new
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        self.longest = len(ordered[0])

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string (keys included) redacted."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value
