"""Accounts, their API keys, and the exchange of an API key for a JWT."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_job_api.api.deps import DEFAULT_LIMIT, Cursor, JobApiDep, Limit
from automation_job_api.api.schemas import (
    AccountCreate,
    AccountCreated,
    AccountList,
    AccountOut,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    TokenOut,
)
from automation_job_api.db.tables import ApiKey
from automation_job_api.domain.api_keys import key_prefix

router = APIRouter(prefix="/api/v1")


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, prefix=key_prefix(key.id), created_at=key.created_at, revoked_at=key.revoked_at)


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Create an account and its first API key (admin)",
    responses=problems(403, 409, 422, 503),
)
async def create_account(
    body: AccountCreate, principal: CurrentPrincipal, job_api: JobApiDep, response: Response
) -> AccountCreated:
    account, key = await job_api.accounts.create_account(principal, body.name)
    response.headers["Location"] = f"/api/v1/accounts/{account.id}"
    return AccountCreated(id=account.id, name=account.name, created_at=account.created_at, api_key=key.token)


@router.get(
    "/accounts", tags=["accounts"], summary="List accounts, newest first (admin)", responses=problems(403, 422, 503)
)
async def list_accounts(
    principal: CurrentPrincipal, job_api: JobApiDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> AccountList:
    page = await job_api.accounts.list_accounts(principal, cursor=cursor, limit=limit)
    return AccountList(items=[AccountOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor)


@router.get(
    "/accounts/{account_id}",
    tags=["accounts"],
    summary="Read an account (admin, or the account itself)",
    responses=problems(404, 422, 503),
)
async def get_account(account_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> AccountOut:
    return AccountOut.model_validate(await job_api.accounts.get_account(principal, account_id))


@router.post(
    "/accounts/{account_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Issue another API key (admin, or the account itself); the secret is shown once",
    responses=problems(404, 422, 503),
)
async def issue_key(account_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> ApiKeyCreated:
    issued = await job_api.accounts.issue_key(principal, account_id)
    key = issued.row
    return ApiKeyCreated(id=key.id, api_key=issued.token, prefix=key_prefix(key.id), created_at=key.created_at)


@router.get(
    "/accounts/{account_id}/api-keys",
    tags=["accounts"],
    summary="List an account's API keys (never the secrets)",
    responses=problems(404, 422, 503),
)
async def list_keys(account_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> ApiKeyList:
    keys = await job_api.accounts.list_keys(principal, account_id)
    return ApiKeyList(items=[_key_out(k) for k in keys])


@router.delete(
    "/accounts/{account_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["accounts"],
    summary="Revoke an API key (tokens already issued for it stay valid until they expire)",
    responses=problems(404, 422, 503),
)
async def revoke_key(account_id: uuid.UUID, key_id: str, principal: CurrentPrincipal, job_api: JobApiDep) -> None:
    await job_api.accounts.revoke_key(principal, account_id, key_id)


@router.post(
    "/auth/token",
    tags=["auth"],
    summary="Exchange the API key that authenticates the call for a signed JWT",
    responses=problems(403, 503),
)
async def issue_token(principal: CurrentPrincipal, job_api: JobApiDep) -> TokenOut:
    token = job_api.accounts.exchange_for_token(principal)
    return TokenOut(access_token=token.token, expires_in=token.expires_in)
