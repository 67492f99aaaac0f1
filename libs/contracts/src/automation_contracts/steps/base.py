"""What every step config model shares: strict JSON types, unknown keys refused, the common field types.

Models only decide whether a config is acceptable; job-api stores the config as given and the executor
renders its templates at run time. Checks that span fields are :meth:`StepConfig.problems`, so each
failure still names one field (``known_hosts_secret``), which a model-level validator could not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from automation_contracts.steps.templates import SECRET_NAME, TEMPLATE, TEMPLATE_START

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WORD_PLACEHOLDER = "template"
"""What a template stands in as where a field's shape is checked before it is rendered."""


def _secret_name(value: str) -> str:
    if not SECRET_NAME.match(value):
        raise ValueError(
            "must be the NAME of a secret (capital letters, digits and _, starting with a letter, e.g. DB_PASSWORD),"
            " never the secret itself"
        )
    return value


def check_relative_path(value: str) -> str:
    """``value`` when it is a path inside the execution's working directory (ValueError otherwise).

    The executor checks each rendered path again.
    """
    relative = not value.startswith(("/", "\\", "~")) and not PureWindowsPath(value).drive
    if not relative or ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise ValueError("must be a path inside the execution's working directory (relative, no '..')")
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits and _)")
    return value


def _host(value: str) -> str:
    shape = TEMPLATE.sub(WORD_PLACEHOLDER, value)
    if any(c.isspace() for c in shape) or "/" in shape:
        raise ValueError("must be a host name or address, without scheme, path or spaces")
    return value


SecretName = Annotated[str, AfterValidator(_secret_name)]
"""A secret referenced by name (``^[A-Z][A-Z0-9_]*$``); the executor resolves it."""

RelativePath = Annotated[str, Field(min_length=1), AfterValidator(check_relative_path)]
"""A path inside the execution's temporary working directory."""

NonEmpty = Annotated[str, Field(min_length=1)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Host = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_host)]
ExitCodes = Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1)]


def check_url(value: str, schemes: frozenset[str], what: str = "url") -> str:
    """``value`` when it is an absolute URL with one of ``schemes`` and a host (or begins with a template)."""
    if value.startswith(TEMPLATE_START):
        return value  # the whole beginning comes from a template; the executor checks it at run time
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{what} must start with {' or '.join(sorted(s + '://' for s in schemes))}")
    if not parts.netloc:
        raise ValueError(f"{what} has no host")
    return value


class StepConfig(BaseModel):
    """Base of the per-type configs: strict JSON types, unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    SECRETS_ALLOWED: ClassVar[bool] = True
    """Whether ``${{ secrets.* }}`` may appear (False where the config is published)."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """``(field, message)`` for every check across fields that fails (none by default)."""
        return iter(())

    def secret_fields(self) -> Iterator[str]:
        """The secret NAMES given in ``*_secret`` fields."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_secret") and isinstance(value, str):
                yield value

    def shell_scripts(self) -> tuple[str, ...]:
        """The fields whose text runs as a POSIX shell script (templates there must stand as words)."""
        return ()


def exactly_one(model: StepConfig, first: str, second: str, what: str) -> Iterator[tuple[str, str]]:
    """A problem on ``first`` (or on ``second`` when both are set) unless exactly one of the two is set."""
    given = [name for name in (first, second) if getattr(model, name) is not None]
    if len(given) == 2:
        yield second, f"give {first} or {second}, not both ({what})"
    elif not given:
        yield first, f"give {first} or {second} ({what})"
