"""Secrets, resolved inside the executor by NAME: from a directory or from the environment.

Job definitions never hold secret values: they name them (``${{ secrets.DB_PASSWORD }}``,
``password_secret: DB_PASSWORD``). The executor resolves a name when a step needs it, looking in its
sources in the configured order:

- ``dir``: the file ``<directory>/<NAME>``, the way Kubernetes mounts a Secret as a volume (one file
  per key). The content is the value, without one trailing newline (``\\n`` or ``\\r\\n``).
- ``env``: the executor's environment variable ``AUTOMATION_SECRET_<NAME>``.

A name is ``^[A-Z][A-Z0-9_]*$`` (job-api accepts only such names), so it can never leave the directory.
An unknown name raises :class:`UnknownSecret`, which names it and the places looked in. Files are read
on every lookup, so a rotated Secret is picked up by the next execution.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from automation_executor.domain.templates import SECRET_NAME

SecretSource = Literal["dir", "env"]
SOURCES: tuple[SecretSource, ...] = ("dir", "env")
ENV_PREFIX = "AUTOMATION_SECRET_"
MAX_SECRET_BYTES = 1024 * 1024
"""Largest secret file read (Kubernetes caps a Secret at 1 MiB)."""


class UnknownSecret(LookupError):
    """No source has a secret of this name (or it cannot be read)."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"secret {name!r}: {detail}")
        self.name = name


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    """Where secrets come from: ``directory`` (or None), and the order of ``sources``."""

    directory: str | None = None
    sources: tuple[SecretSource, ...] = SOURCES

    @classmethod
    def parse_sources(cls, text: str) -> tuple[SecretSource, ...]:
        """``"dir,env"`` → ``("dir", "env")``; ValueError for an unknown or repeated source."""
        names = [part.strip() for part in text.split(",") if part.strip()]
        sources: list[SecretSource] = []
        for name in names:
            if name not in SOURCES:
                raise ValueError(f"unknown secret source {name!r} (known: {', '.join(SOURCES)})")
            if name in sources:
                raise ValueError(f"secret source {name!r} given twice")
            sources.append(name)
        if not sources:
            raise ValueError("give at least one secret source")
        return tuple(sources)


class SecretResolver:
    """Resolves secret names to values from :class:`SecretsConfig`'s sources."""

    def __init__(self, config: SecretsConfig, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._environ = environ if environ is not None else os.environ

    def _places(self) -> list[str]:
        places = []
        for source in self._config.sources:
            if source == "dir" and self._config.directory is not None:
                places.append("the secrets directory")
            elif source == "env":
                places.append(f"the environment ({ENV_PREFIX}<NAME>)")
        return places

    def resolve(self, name: str) -> str:
        """The value of secret ``name``; :class:`UnknownSecret` when no source has it."""
        if not SECRET_NAME.match(name):
            raise UnknownSecret(name, "not a secret name (capital letters, digits and _, e.g. DB_PASSWORD)")
        for source in self._config.sources:
            value = self._from_dir(name) if source == "dir" else self._environ.get(ENV_PREFIX + name)
            if value is not None:
                return value
        places = self._places()
        where = " or ".join(places) if places else "no source (no secrets directory configured, environment off)"
        raise UnknownSecret(name, f"not found (looked in {where})")

    def _from_dir(self, name: str) -> str | None:
        if self._config.directory is None:
            return None
        path = Path(self._config.directory, name)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UnknownSecret(name, f"cannot read it from the secrets directory: {exc.strerror}") from exc
        if len(raw) > MAX_SECRET_BYTES:
            raise UnknownSecret(name, f"larger than {MAX_SECRET_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnknownSecret(name, "not UTF-8 text") from exc
        return text.removesuffix("\n").removesuffix("\r")
