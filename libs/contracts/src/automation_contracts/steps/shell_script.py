"""Where a template may stand in a POSIX shell script (a ``"shell": true`` command, an ``ssh.exec`` command).

The executor replaces each template with a double-quoted reference to a shell variable holding the
value (``"${automation_value_0}"``), so a value is never read as code wherever it ends up. It is one word
only where a word can start: not inside quotes (single, double, ``$'...'``), a comment, backquotes or
arithmetic, not right after ``\\`` or ``$``, and not in a script with a here-document (whose body is
not parsed as words). :func:`check_shell_script` refuses a template anywhere else, so job-api refuses
the definition and the executor never renders it.
"""

from __future__ import annotations

from automation_contracts.steps.templates import TEMPLATE, TemplateError, parse_expression

_WORD_BREAKS = frozenset(" \t\n;&|()<>")
_CLOSING = {"double quotes": '"', "backquotes": "`", "$'...' quotes": "'"}
_OPENING = {"'": "single quotes", '"': "double quotes", "`": "backquotes"}


def check_shell_script(script: str) -> None:
    """Raise :class:`TemplateError` for a template placed where a quoted value could still be read as code."""
    matches = list(TEMPLATE.finditer(script))
    if not matches:
        return
    for match in matches:
        parse_expression(match.group(1))
    scanner = _ShellScanner(script)
    states = scanner.scan({m.start(): m.end() for m in matches})
    if scanner.heredoc:
        raise TemplateError("templates cannot be used in a shell script with a here-document (<<)")
    for match in matches:
        where = states.get(match.start(), "escaped text")
        expression = match.group(0)
        if where != "plain":
            raise TemplateError(
                f"{expression} is inside {where} in the shell script; write it as a word of its own"
                " (the value is quoted for you)"
            )
        before = script[match.start() - 1] if match.start() > 0 else ""
        if before in {"\\", "$"}:
            raise TemplateError(f"{expression} follows {before!r} in the shell script; write it as a word of its own")


class _ShellScanner:
    """A small shell lexer: enough to know, at each template, whether a quoted word is safe there."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.stack: list[str] = []  # open quoting contexts, innermost last; empty means plain
        self.arith_depth = 0
        self.heredoc = False

    def where(self) -> str:
        if self.stack:
            return self.stack[-1]
        return "arithmetic" if self.arith_depth else "plain"

    def scan(self, templates: dict[int, int]) -> dict[int, str]:
        """The quoting state at each template start (``templates``: start → end)."""
        states: dict[int, str] = {}
        i = 0
        while i < len(self.script):
            if i in templates:
                states[i] = self.where()
                i = templates[i]
                continue
            top = self.stack[-1] if self.stack else None
            i = self._quoted(i, top) if top is not None else self._plain(i)
        return states

    def _quoted(self, i: int, top: str) -> int:
        """Advance inside a quote or comment; the next index."""
        c = self.script[i]
        if top == "single quotes":
            if c == "'":
                self.stack.pop()
        elif top == "comment":
            if c == "\n":
                self.stack.pop()
        elif c == "\\":
            return i + 2
        elif c == _CLOSING[top]:
            self.stack.pop()
        return i + 1

    def _plain(self, i: int) -> int:
        """Advance outside any quote; the next index."""
        script, c = self.script, self.script[i]
        if c == "\\":
            return i + 2
        if c in _OPENING:
            self.stack.append(_OPENING[c])
        elif script.startswith("$'", i):
            self.stack.append("$'...' quotes")
            return i + 2
        elif c == "#" and (i == 0 or script[i - 1] in _WORD_BREAKS):
            self.stack.append("comment")
        elif script.startswith("<<", i):
            self.heredoc = True
            return i + 2
        elif script.startswith("((", i):
            self.arith_depth += 2
            return i + 2
        elif self.arith_depth and c in "()":
            self.arith_depth += 1 if c == "(" else -1
        return i + 1
