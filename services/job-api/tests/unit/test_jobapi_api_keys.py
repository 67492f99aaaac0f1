"""API keys: format, parsing, hashing, constant-time verification."""

from __future__ import annotations

import hashlib

import pytest

from automation_job_api.domain.api_keys import (
    generate_key,
    hash_secret,
    key_prefix,
    parse_key,
    verify_secret,
)


def test_generated_key_parses_back_to_its_id_and_a_secret_matching_the_stored_hash() -> None:
    new = generate_key()
    parsed = parse_key(new.token)
    assert parsed is not None
    assert parsed.key_id == new.key_id
    assert new.token == f"ak_{new.key_id}_{parsed.secret}"
    assert len(parsed.secret) == 43  # 32 bytes, unpadded base64url
    assert new.secret_hash == hashlib.sha256(parsed.secret.encode()).digest()
    assert verify_secret(parsed.secret, new.secret_hash)
    assert new.prefix == key_prefix(new.key_id) == f"ak_{new.key_id}"


def test_keys_are_unique_and_the_token_never_holds_the_hash() -> None:
    keys = [generate_key() for _ in range(50)]
    assert len({k.key_id for k in keys}) == 50
    assert len({k.token for k in keys}) == 50
    assert all(k.secret_hash.hex() not in k.token for k in keys)


def test_a_secret_containing_underscores_and_dashes_is_kept_whole() -> None:
    secret = "a_b-c" + "x" * 38
    parsed = parse_key(f"ak_0123456789abcdef_{secret}")
    assert parsed is not None
    assert parsed.key_id == "0123456789abcdef"
    assert parsed.secret == secret


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "ak_",
        "ak_0123456789abcdef",
        "ak_0123456789abcdef_",
        "ak_0123456789abcdef_short",
        "ak_0123456789ABCDEF_" + "x" * 43,  # key ids are lowercase hex
        "ak_0123456789abcde_" + "x" * 43,  # 15 characters
        "bk_0123456789abcdef_" + "x" * 43,
        "ak_0123456789abcdef_" + "x" * 42 + "=",
        "ak_0123456789abcdef_" + "x" * 44,
        "header.payload.signature",
    ],
)
def test_malformed_credentials_are_not_keys(credential: str) -> None:
    assert parse_key(credential) is None


def test_a_wrong_secret_or_an_unknown_key_does_not_verify() -> None:
    new = generate_key()
    parsed = parse_key(new.token)
    assert parsed is not None
    other = parse_key(generate_key().token)
    assert other is not None
    assert not verify_secret(other.secret, new.secret_hash)
    assert not verify_secret(parsed.secret, None)
    assert hash_secret(parsed.secret) == new.secret_hash
