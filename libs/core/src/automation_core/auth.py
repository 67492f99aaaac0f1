"""Authentication shared by the five services.

Three credentials are accepted as ``Authorization: Bearer <credential>``:

- a signed JWT (HS256, key ``AUTOMATION_JWT_SECRET``) issued by job-api; every service verifies it
  locally, without calling job-api;
- ``AUTOMATION_ADMIN_TOKEN``, when set, accepted by all five as an admin credential (bootstrap);
- anything a service adds through ``extra`` (job-api accepts its API keys this way, also as ``X-API-Key``).

A missing or wrong credential is a 401.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import jwt

from automation_core.errors import Forbidden, Unauthorized
from automation_core.settings import ServiceSettings

ADMIN_SCOPE = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an account (with scopes), or the admin."""

    subject: str
    account_id: uuid.UUID | None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def require_account(self) -> uuid.UUID:
        """The caller's account id; admin calls without one are refused."""
        if self.account_id is None:
            raise Forbidden("this endpoint acts on behalf of an account; use an account's API key or token")
        return self.account_id

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("admin credential required")


ADMIN = Principal(subject="admin", account_id=None, scopes=frozenset({ADMIN_SCOPE}))

ExtraAuthenticator = Callable[[str], Awaitable[Principal | None]]


def issue_token(
    settings: ServiceSettings,
    *,
    account_id: uuid.UUID,
    scopes: frozenset[str] = frozenset(),
    ttl: int | None = None,
) -> tuple[str, int]:
    """A signed JWT for an account, and its lifetime in seconds."""
    now = int(time.time())
    lifetime = ttl or settings.jwt_ttl_seconds
    claims = {
        "iss": settings.jwt_issuer,
        "sub": str(account_id),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(sorted(scopes)),
    }
    return jwt.encode(claims, settings.effective_jwt_secret, algorithm="HS256"), lifetime


def verify_token(settings: ServiceSettings, token: str) -> Principal:
    """The principal a JWT names; raises :class:`Unauthorized` when it is not valid."""
    try:
        claims = jwt.decode(
            token,
            settings.effective_jwt_secret,
            algorithms=["HS256"],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss"]},
            leeway=5,
        )
        account_id = uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    scopes = frozenset(str(claims.get("scope", "")).split())
    return Principal(subject=str(account_id), account_id=account_id, scopes=scopes)


class Authenticator:
    """Turns request credentials into a :class:`Principal`."""

    def __init__(self, settings: ServiceSettings, extra: ExtraAuthenticator | None = None) -> None:
        self._settings = settings
        self._extra = extra

    async def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        credential = api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("Authorization header must be 'Bearer <token>'")
            credential = value.strip()
        if not credential:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <token>'")
        admin = self._settings.admin_token
        if admin is not None and hmac.compare_digest(credential.encode(), admin.get_secret_value().encode()):
            return ADMIN
        if credential.count(".") == 2:
            return verify_token(self._settings, credential)
        if self._extra is not None:
            principal = await self._extra(credential)
            if principal is not None:
                return principal
        raise Unauthorized("invalid credentials")
