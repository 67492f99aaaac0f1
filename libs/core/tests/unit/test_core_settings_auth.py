"""Settings refuse unsafe secrets; tokens and credentials authenticate as documented."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from pydantic import ValidationError

from automation_core.auth import ADMIN, Authenticator, Principal, issue_token, verify_token
from automation_core.errors import Forbidden, Unauthorized
from automation_core.settings import ServiceSettings

SECRET = "s" * 32
ADMIN_TOKEN = "a" * 40


def settings(**kw: object) -> ServiceSettings:
    base: dict[str, object] = {"jwt_secret": SECRET, "admin_token": ADMIN_TOKEN}
    base.update(kw)
    return ServiceSettings(**base)  # type: ignore[arg-type]


def test_production_requires_a_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMATION_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="AUTOMATION_JWT_SECRET is required"):
        ServiceSettings(env="production")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        ServiceSettings(env="production", jwt_secret="short")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ADMIN_TOKEN must be at least"):
        ServiceSettings(env="production", jwt_secret=SECRET, admin_token="tiny")  # type: ignore[arg-type]


def test_development_runs_without_secret_and_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_HTTP_PORT", "9123")
    s = ServiceSettings(env="development")
    assert s.http_port == 9123
    assert s.effective_jwt_secret


def test_token_round_trip_and_tampering() -> None:
    s = settings()
    account = uuid.uuid4()
    token, ttl = issue_token(s, account_id=account, scopes=frozenset({"jobs:write"}))
    assert ttl == s.jwt_ttl_seconds
    principal = verify_token(s, token)
    assert principal.account_id == account
    assert "jobs:write" in principal.scopes
    assert not principal.is_admin
    with pytest.raises(Unauthorized):
        verify_token(settings(jwt_secret="x" * 32), token)
    expired = jwt.encode(
        {"iss": s.jwt_issuer, "sub": str(account), "iat": 0, "exp": int(time.time()) - 60}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(s, expired)


async def test_authenticator_accepts_admin_jwt_and_extra() -> None:
    s = settings()
    account = uuid.uuid4()
    extra_principal = Principal(subject="k", account_id=account)

    async def extra(credential: str) -> Principal | None:
        return extra_principal if credential == "ak_good" else None

    auth = Authenticator(s, extra=extra)
    assert await auth.authenticate(f"Bearer {ADMIN_TOKEN}") == ADMIN
    token, _ = issue_token(s, account_id=account)
    assert (await auth.authenticate(f"Bearer {token}")).account_id == account
    assert await auth.authenticate(None, api_key="ak_good") is extra_principal
    for header in (None, "Basic abc", "Bearer ", "Bearer ak_bad", "Bearer a.b.c"):
        with pytest.raises(Unauthorized):
            await auth.authenticate(header)


def test_principal_guards() -> None:
    with pytest.raises(Forbidden):
        ADMIN.require_account()
    with pytest.raises(Forbidden):
        Principal(subject="x", account_id=uuid.uuid4()).require_admin()
    ADMIN.require_admin()
