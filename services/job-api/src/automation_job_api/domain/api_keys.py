"""API keys: ``ak_<key_id>_<secret>``.

``key_id`` is 16 lowercase hex characters (the public half, used to find the key); ``secret`` is 32
random bytes in unpadded base64url (43 characters, which may themselves contain ``_`` and ``-``).
Only the key id and ``sha256(secret)`` are stored; a presented secret is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "ak_"
SECRET_BYTES = 32
_KEY_PATTERN = re.compile(r"ak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_UNKNOWN_KEY_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """The two halves of a presented API key."""

    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``token`` is shown to the caller once, ``secret_hash`` is stored."""

    key_id: str
    token: str
    secret_hash: bytes

    @property
    def prefix(self) -> str:
        return key_prefix(self.key_id)


def key_prefix(key_id: str) -> str:
    """The non-secret beginning of a key (``ak_<key_id>``), shown in listings."""
    return f"{KEY_PREFIX}{key_id}"


def hash_secret(secret: str) -> bytes:
    """SHA-256 of the secret's text."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def generate_key() -> NewKey:
    """A new random key."""
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode("ascii")
    return NewKey(key_id=key_id, token=f"{KEY_PREFIX}{key_id}_{secret}", secret_hash=hash_secret(secret))


def parse_key(credential: str) -> ParsedKey | None:
    """The key id and secret of a well-formed key; None for anything else."""
    match = _KEY_PATTERN.fullmatch(credential)
    if match is None:
        return None
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


def verify_secret(secret: str, stored_hash: bytes | None) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time.

    With ``stored_hash`` None (no such key) a comparison still runs, so an unknown key id takes as
    long to refuse as a wrong secret.
    """
    expected = stored_hash if stored_hash is not None else _UNKNOWN_KEY_HASH
    return hmac.compare_digest(hash_secret(secret), expected) and stored_hash is not None
