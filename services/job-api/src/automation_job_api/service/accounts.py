"""Accounts and their credentials: API keys (stored hashed) and the JWTs exchanged for them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_core.auth import Principal, issue_token
from automation_core.errors import Conflict, Forbidden, NotFound
from automation_core.logging import get_logger
from automation_core.settings import ServiceSettings
from automation_db import utcnow
from automation_job_api.db.tables import Account, ApiKey
from automation_job_api.domain.api_keys import KEY_PREFIX, NewKey, generate_key, key_prefix, parse_key, verify_secret
from automation_job_api.metrics import API_KEYS_ISSUED
from automation_job_api.service.paging import Page, newest_first

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just issued: ``token`` is the only time the secret is seen."""

    row: ApiKey
    token: str


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A signed JWT and its lifetime in seconds."""

    token: str
    expires_in: int


def _visible(principal: Principal, account_id: uuid.UUID) -> bool:
    return principal.is_admin or principal.account_id == account_id


class AccountService:
    """Use cases on accounts and their credentials."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: ServiceSettings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def create_account(self, principal: Principal, name: str) -> tuple[Account, IssuedKey]:
        """A new account and its first API key (admin only); 409 naming ``name`` if it is taken."""
        principal.require_admin()
        now = utcnow()
        account = Account(id=uuid.uuid4(), name=name, created_at=now)
        new = generate_key()
        try:
            async with self._sessions.begin() as session:
                session.add(account)
                await session.flush()
                key = self._add_key(session, account.id, new)
        except IntegrityError as exc:
            raise Conflict(f"an account named {name!r} already exists", field="name") from exc
        API_KEYS_ISSUED.inc()
        log.info("account_created", account_id=str(account.id), key_prefix=new.prefix)
        return account, IssuedKey(row=key, token=new.token)

    async def list_accounts(self, principal: Principal, *, cursor: str | None, limit: int) -> Page[Account]:
        """Every account, newest first (admin only)."""
        principal.require_admin()
        async with self._sessions() as session:
            return await newest_first(
                session, select(Account), created_at=Account.created_at, id_=Account.id, cursor=cursor, limit=limit
            )

    async def get_account(self, principal: Principal, account_id: uuid.UUID) -> Account:
        """One account, seen by the admin or by the account itself (else 404)."""
        async with self._sessions() as session:
            return await self._visible_account(session, principal, account_id)

    async def issue_key(self, principal: Principal, account_id: uuid.UUID) -> IssuedKey:
        """Another API key for the account (admin, or the account itself)."""
        new = generate_key()
        async with self._sessions.begin() as session:
            await self._visible_account(session, principal, account_id)
            key = self._add_key(session, account_id, new)
        API_KEYS_ISSUED.inc()
        log.info("api_key_issued", account_id=str(account_id), key_prefix=new.prefix)
        return IssuedKey(row=key, token=new.token)

    async def list_keys(self, principal: Principal, account_id: uuid.UUID) -> list[ApiKey]:
        """The account's keys, newest first, revoked ones included (never the secrets)."""
        async with self._sessions() as session:
            await self._visible_account(session, principal, account_id)
            stmt = (
                select(ApiKey)
                .where(ApiKey.account_id == account_id)
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            )
            return list((await session.scalars(stmt)).all())

    async def revoke_key(self, principal: Principal, account_id: uuid.UUID, key_id: str) -> None:
        """Revoke a key; revoking a revoked key is a no-op; an unknown key is a 404."""
        async with self._sessions.begin() as session:
            await self._visible_account(session, principal, account_id)
            key = await session.scalar(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id).with_for_update()
            )
            if key is None:
                raise NotFound("API key not found")
            if key.revoked_at is None:
                await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
                log.info("api_key_revoked", account_id=str(account_id), key_prefix=key_prefix(key_id))

    async def authenticate_key(self, credential: str) -> Principal | None:
        """The account an API key belongs to; None when it is malformed, unknown or revoked."""
        parsed = parse_key(credential)
        if parsed is None:
            return None
        async with self._sessions() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.id == parsed.key_id))
        if not verify_secret(parsed.secret, key.secret_hash if key is not None else None):
            return None
        assert key is not None  # verify_secret is False without a stored hash
        if key.revoked_at is not None:
            return None
        return Principal(subject=key_prefix(key.id), account_id=key.account_id)

    def exchange_for_token(self, principal: Principal) -> AccessToken:
        """A JWT for the account whose API key authenticated the call."""
        if principal.account_id is None or not principal.subject.startswith(KEY_PREFIX):
            raise Forbidden("a token is issued in exchange for an account's API key; authenticate with one")
        token, lifetime = issue_token(self._settings, account_id=principal.account_id)
        return AccessToken(token=token, expires_in=lifetime)

    @staticmethod
    def _add_key(session: AsyncSession, account_id: uuid.UUID, new: NewKey) -> ApiKey:
        key = ApiKey(id=new.key_id, account_id=account_id, secret_hash=new.secret_hash, created_at=utcnow())
        session.add(key)
        return key

    @staticmethod
    async def _visible_account(session: AsyncSession, principal: Principal, account_id: uuid.UUID) -> Account:
        account = await session.get(Account, account_id) if _visible(principal, account_id) else None
        if account is None:
            raise NotFound("account not found")
        return account
