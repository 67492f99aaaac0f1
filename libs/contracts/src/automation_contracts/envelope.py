"""The CloudEvents 1.0 envelope in JSON structured mode, carried by every message."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from automation_contracts.errors import ContractError, from_validation_error
from automation_contracts.primitives import Timestamp, Uri, UriReference

CONTENT_TYPE = "application/cloudevents+json"
"""The AMQP content type of a structured-mode CloudEvent."""

EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
"""The CloudEvents naming rule for extension attributes."""

CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema", "data", "data_base64"}
)
"""The attributes CloudEvents 1.0 defines; every other attribute is an extension."""

ExtensionValue = str | int | bool
NonEmpty = Annotated[str, Field(min_length=1)]


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event; extension attributes are kept as extra fields.

    An optional attribute set to None is absent: :meth:`to_json_bytes` and ``model_dump`` leave it
    out, as the CloudEvents JSON format treats null as absent.
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: NonEmpty
    source: Annotated[UriReference, Field(min_length=1)]
    type: NonEmpty
    time: Timestamp | None = None
    subject: NonEmpty | None = None
    datacontenttype: NonEmpty | None = None
    dataschema: Annotated[Uri, Field(min_length=1)] | None = None
    data: Any = None
    data_base64: str | None = None

    @model_validator(mode="after")
    def _check_extensions_and_data(self) -> Self:
        for name, value in (self.model_extra or {}).items():
            if not EXTENSION_NAME.fullmatch(name):
                raise ValueError(f"extension attribute name {name!r} breaks the CloudEvents naming rule")
            if value is not None and not isinstance(value, ExtensionValue):
                raise ValueError(f"extension attribute {name!r} must be a string, integer or boolean")
        if self.data is not None and self.data_base64 is not None:
            raise ValueError("data and data_base64 are mutually exclusive")
        return self

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if value is not None}

    @property
    def extensions(self) -> dict[str, ExtensionValue]:
        """The extension attributes that are set."""
        return {key: value for key, value in (self.model_extra or {}).items() if value is not None}

    def to_json_bytes(self) -> bytes:
        """The event as a structured-mode JSON body."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> CloudEvent:
        """Parse a structured-mode JSON body; raises ContractError (path "" for unparsable JSON)."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid" or not first["loc"]:
                raise ContractError(first["msg"]) from exc
            raise from_validation_error(exc, _loads_or_none(raw)) from exc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CloudEvent:
        """Build an event from a decoded JSON object; raises ContractError naming the field at fault."""
        value: Any = d
        try:
            return cls.model_validate(dict(value) if isinstance(value, Mapping) else value)
        except ValidationError as exc:
            raise from_validation_error(exc, d) from exc


def _loads_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
