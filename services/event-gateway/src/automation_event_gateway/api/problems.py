"""How a refused event becomes a problem+json response."""

from __future__ import annotations

from automation_core.errors import AutomationError, Forbidden, InvalidInput
from automation_event_gateway.domain.errors import EventRejected, RejectReason


class PayloadTooLarge(AutomationError):
    status, type_slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AutomationError):
    status, type_slug, title = 415, "unsupported-media-type", "Unsupported media type"


STATUS_ERRORS: dict[RejectReason, type[AutomationError]] = {
    RejectReason.FORBIDDEN_TYPE: Forbidden,
    RejectReason.TOO_LARGE: PayloadTooLarge,
    RejectReason.UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaType,
}


def problem_for(exc: EventRejected) -> AutomationError:
    """403 for a platform type, 413/415 for limits and media types, 422 otherwise; ``field`` names the spot."""
    error_class = STATUS_ERRORS.get(exc.reason, InvalidInput)
    errors = [{"field": d.field, "message": d.message, "reason": d.reason.value} for d in exc.details]
    return error_class(str(exc), field=exc.field or None, errors=errors or None)
