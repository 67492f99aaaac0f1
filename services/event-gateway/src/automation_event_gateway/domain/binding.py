"""The CloudEvents 1.0 HTTP protocol binding: what a ``POST /api/v1/events`` body means.

- Structured mode (``Content-Type: application/cloudevents+json``): the body is one event.
- Batch mode (``application/cloudevents-batch+json``): the body is a JSON array of events.
- Binary mode (any other content type, or none): the attributes are ``ce-*`` headers (values
  percent-decoded), the body is ``data`` and ``Content-Type`` is ``datacontenttype``. A JSON body
  (``application/json``, ``*/*+json``) is parsed; a textual one (``text/*``, XML, YAML, form data, or
  any type declaring a charset) is kept as text; anything else is kept as ``data_base64``.

:func:`read_submission` turns a request into a :class:`Submission`: raw attribute mappings plus the
way to name a field as the caller sent it (``type``; ``0.type`` in a batch; ``ce-type`` in binary mode).
What is wrong with the body as a whole (not JSON, a batch that is no array, a structured event that is no
object) names ``body``, as on every service.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from automation_contracts import CORE_ATTRIBUTES
from automation_core.errors import BODY_FIELD, body_problem
from automation_event_gateway.domain.envelope import is_extension_name, json_kind
from automation_event_gateway.domain.errors import EventRejected, RejectReason

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")
TEXTUAL_TYPES = frozenset(
    {
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/x-www-form-urlencoded",
        "application/javascript",
        "application/graphql",
        "application/sql",
    }
)
UTF8_NAMES = frozenset({"utf-8", "utf8"})


class Mode(StrEnum):
    """How the request carries its event(s)."""

    STRUCTURED = "structured"
    BATCH = "batch"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed ``Content-Type``: lower-case ``type/subtype`` and its parameters."""

    essence: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str | None) -> MediaType | None:
        if value is None or not value.strip():
            return None
        head, *rest = value.split(";")
        params: dict[str, str] = {}
        for part in rest:
            name, sep, raw = part.partition("=")
            if sep:
                params[name.strip().lower()] = raw.strip().strip('"')
        return cls(head.strip().lower(), params)

    @property
    def charset(self) -> str | None:
        return self.params.get("charset")

    @property
    def is_json(self) -> bool:
        return self.essence in {"application/json", "text/json"} or self.essence.endswith("+json")

    @property
    def is_textual(self) -> bool:
        return (
            self.essence.startswith("text/")
            or self.essence in TEXTUAL_TYPES
            or self.essence.endswith(("+xml", "+yaml"))
            or self.charset is not None
        )


def mode_of(content_type: str | None) -> Mode:
    """The binding mode a ``Content-Type`` selects."""
    media = MediaType.parse(content_type)
    if media is not None and media.essence == STRUCTURED:
        return Mode.STRUCTURED
    if media is not None and media.essence == BATCH:
        return Mode.BATCH
    return Mode.BINARY


@dataclass(frozen=True, slots=True)
class Submission:
    """The event(s) of one request, as raw attribute mappings, and how the caller names their fields."""

    mode: Mode
    items: tuple[Any, ...]

    def field(self, index: int, path: str) -> str:
        """The caller's name for ``path`` (an attribute path such as ``type`` or ``data.site``) of item ``index``;
        ``""`` (the event as a whole) is ``body`` in structured mode and the index in a batch."""
        if self.mode is Mode.BATCH:
            return f"{index}.{path}" if path else str(index)
        if self.mode is Mode.BINARY:
            head, _, rest = path.partition(".")
            if head in {"data", "data_base64"}:
                return "data" + (f".{rest}" if rest else "")
            if head == "datacontenttype":
                return "content-type"
            return f"ce-{path}" if path else ""
        return path or BODY_FIELD


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(text: str) -> Any:
    """Strict JSON: NaN and Infinity are refused (PostgreSQL's jsonb cannot hold them)."""
    return json.loads(text, parse_constant=_reject_constant)


def _decode_json(body: bytes, media: MediaType | None, field: str) -> Any:
    charset = media.charset if media is not None else None
    if charset is not None and charset.lower() not in UTF8_NAMES:
        raise EventRejected(RejectReason.UNSUPPORTED_MEDIA_TYPE, "JSON must be UTF-8", "content-type")
    try:
        return loads_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventRejected(RejectReason.MALFORMED, _json_problem(exc), field) from exc


def _json_problem(exc: Exception) -> str:
    """What keeps a body from being JSON, said as every service says it (line and column of a syntax error)."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | RecursionError) or "integer string" in str(exc):
        return body_problem(exc)
    return f"not valid JSON: {exc}"  # NaN, Infinity


def read_submission(
    content_type: str | None, headers: Sequence[tuple[str, str]], body: bytes, *, max_batch: int
) -> Submission:
    """The submission a request carries; EventRejected when its body or headers cannot be read."""
    mode = mode_of(content_type)
    media = MediaType.parse(content_type)
    if mode is Mode.STRUCTURED:
        return Submission(mode, (_decode_json(body, media, BODY_FIELD),))
    if mode is Mode.BATCH:
        items = _decode_json(body, media, BODY_FIELD)
        if not isinstance(items, list):
            raise EventRejected(
                RejectReason.MALFORMED, f"a batch is a JSON array of events, not {json_kind(items)}", BODY_FIELD
            )
        if len(items) > max_batch:
            raise EventRejected(RejectReason.TOO_LARGE, f"a batch holds at most {max_batch} events")
        return Submission(mode, tuple(items))
    return Submission(mode, (binary_attributes(headers, content_type, body),))


def binary_attributes(headers: Sequence[tuple[str, str]], content_type: str | None, body: bytes) -> dict[str, Any]:
    """The attributes of a binary-mode event: ``ce-*`` headers, ``Content-Type`` and the body as data."""
    attributes: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in attributes:
            raise EventRejected(RejectReason.INVALID_ENVELOPE, "header given more than once", name)
        if attribute == "datacontenttype":
            raise EventRejected(
                RejectReason.INVALID_ENVELOPE, "in binary mode the Content-Type header is datacontenttype", name
            )
        if attribute in {"data", "data_base64"} or (
            attribute not in CORE_ATTRIBUTES and not is_extension_name(attribute)
        ):
            raise EventRejected(
                RejectReason.INVALID_ENVELOPE,
                "not a CloudEvents attribute; extension names are 1 to 20 lower-case letters and digits",
                name,
            )
        try:
            attributes[attribute] = unquote(raw_value.strip(), encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise EventRejected(RejectReason.INVALID_ENVELOPE, "percent-encoding is not UTF-8", name) from exc
    if not attributes:
        raise EventRejected(
            RejectReason.INVALID_ENVELOPE,
            f"binary mode needs the headers {', '.join(REQUIRED_HEADERS)}; to send the event as a JSON body "
            f"use Content-Type: {STRUCTURED}",
            REQUIRED_HEADERS[0],
        )
    media = MediaType.parse(content_type)
    if media is not None:
        attributes["datacontenttype"] = content_type.strip() if content_type else None
    if body:
        attributes.update(_binary_data(body, media))
    return attributes


def _binary_data(body: bytes, media: MediaType | None) -> dict[str, Any]:
    if media is not None and media.is_json:
        return {"data": _decode_json(body, media, "data")}
    if media is not None and media.is_textual:
        charset = media.charset or "utf-8"
        try:
            codec = codecs.lookup(charset)
        except LookupError as exc:
            raise EventRejected(
                RejectReason.UNSUPPORTED_MEDIA_TYPE, f"unknown charset {charset!r}", "content-type"
            ) from exc
        # Python's codec registry also holds bytes-to-bytes and text-to-text transforms (base64, hex,
        # zlib, rot13, ...) and "undefined", which refuses everything: none of them is a text encoding.
        if not getattr(codec, "_is_text_encoding", True) or codec.name == "undefined":
            raise EventRejected(
                RejectReason.UNSUPPORTED_MEDIA_TYPE, f"charset {charset!r} is not a text encoding", "content-type"
            )
        try:
            return {"data": body.decode(charset)}
        except UnicodeDecodeError as exc:
            raise EventRejected(RejectReason.MALFORMED, f"the body is not valid {charset}", "data") from exc
        except (LookupError, UnicodeError) as exc:  # any other codec that cannot decode bytes to text
            raise EventRejected(
                RejectReason.UNSUPPORTED_MEDIA_TYPE, f"charset {charset!r} is not a text encoding", "content-type"
            ) from exc
    return {"data_base64": base64.b64encode(body).decode("ascii")}
