"""The contract models' field types accept exactly what the JSON Schema formats accept."""

from __future__ import annotations

import uuid

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from automation_contracts.primitives import Contract, Uuid

CHECKER = Draft202012Validator.FORMAT_CHECKER
GOOD = "0b8f3e2a-5c1d-4e6f-9a7b-2c3d4e5f6a7b"

UUID_TEXTS = [
    GOOD,
    GOOD.upper(),
    str(uuid.UUID(int=0)),
    GOOD.replace("-", ""),  # UUID() takes it; the hyphenated form is required
    "{" + GOOD + "}",
    "urn:uuid:" + GOOD,
    GOOD[:-1],
    GOOD + "0",
    GOOD[:8] + "-" + GOOD[8:],  # a hyphen too many
    # four hyphens in the wrong places (the last group split instead of the first):
    GOOD[:8] + GOOD[9:13] + "-" + GOOD[14:18] + "-" + GOOD[19:23] + "-" + GOOD[24:28] + "-" + GOOD[28:],
    GOOD[:-2] + "-" + GOOD[-2:],  # a fifth hyphen after the four: both take it (UUID() drops hyphens)
    GOOD.replace("a", "g"),
    "",
    "-" * 36,
    " " + GOOD,
    GOOD + "\n",
    GOOD.replace("-", "_"),
    GOOD[:-1] + "\u0661",  # an Arabic-Indic digit: int(..., 16) takes it, and so both do
]


class _Model(Contract):
    id: Uuid


@pytest.mark.parametrize("text", UUID_TEXTS)
def test_a_uuid_is_taken_exactly_when_the_schema_format_takes_it(text: str) -> None:
    if CHECKER.conforms(text, "uuid"):
        assert _Model.model_validate({"id": text}).id == uuid.UUID(text)
    else:
        with pytest.raises(ValidationError, match="must be a UUID in its hyphenated text form"):
            _Model.model_validate({"id": text})


def test_a_uuid_object_passes_through() -> None:
    value = uuid.uuid4()
    assert _Model.model_validate({"id": value}).id is value
