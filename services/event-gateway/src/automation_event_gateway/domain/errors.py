"""Why an event is refused: one exception carrying a reason category and the field at fault."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Categories of refusal; also the ``reason`` label of ``automation_events_rejected_total``."""

    MALFORMED = "malformed"
    """The body is not what its content type promises (not JSON, not an object, not an array)."""
    INVALID_ENVELOPE = "invalid_envelope"
    """A CloudEvents attribute is missing or wrong."""
    INVALID_DATA = "invalid_data"
    """``data`` does not validate against the schema of its type."""
    FORBIDDEN_TYPE = "forbidden_type"
    """A platform-owned type sent by a caller who is not the admin."""
    UNSTORABLE = "unstorable"
    """Valid CloudEvents the history cannot keep (NUL characters, oversized keys, non-finite numbers)."""
    TOO_LARGE = "too_large"
    """The body or the batch exceeds the configured limits."""
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    """A charset or media type the gateway cannot read."""


class EventRejected(Exception):
    """An event (or a whole submission) is refused.

    ``field`` is the dotted path of what is at fault, as the caller sent it: an attribute (``type``),
    a binary-mode header (``ce-source``), a data path (``data.site``), prefixed by the index in a batch
    (``0.type``); ``""`` when the submission as a whole is at fault. ``details`` lists every refusal
    of a batch (this one first).
    """

    def __init__(
        self, reason: RejectReason, message: str, field: str = "", details: tuple[EventRejected, ...] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        self.details = details

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def relocated(self, field: str) -> EventRejected:
        """The same refusal naming another field."""
        return EventRejected(self.reason, self.message, field)
