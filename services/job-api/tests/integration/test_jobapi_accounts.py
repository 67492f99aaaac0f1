"""Accounts, API keys and tokens; 401s; health, metrics, OpenAPI; models and migrations agree."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest
from jobapi_support import ADMIN, JWT_SECRET, AccountCreds, new_account

from automation_core.auth import issue_token, verify_token
from automation_db import schema_drift
from automation_job_api.db.tables import metadata
from automation_job_api.settings import JobApiSettings

pytestmark = pytest.mark.integration


async def test_models_and_migrations_agree(client: httpx.AsyncClient, database_url: str) -> None:
    assert await schema_drift(database_url, metadata) == []


async def test_health_and_metrics_need_no_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["service"] == "job-api"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "automation_api_keys_issued_total" in metrics.text


async def test_admin_creates_an_account_whose_key_is_shown_once(client: httpx.AsyncClient) -> None:
    name = f"team-{uuid.uuid4().hex[:6]}"
    resp = await client.post("/api/v1/accounts", json={"name": name}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "name", "created_at", "api_key"}
    assert body["name"] == name
    assert body["api_key"].startswith("ak_")
    assert resp.headers["location"] == f"/api/v1/accounts/{body['id']}"
    listed = await client.get("/api/v1/accounts", headers=ADMIN, params={"limit": 200})
    assert listed.status_code == 200
    items = {a["id"]: a for a in listed.json()["items"]}
    assert items[body["id"]] == {"id": body["id"], "name": name, "created_at": body["created_at"]}
    keys = await client.get(f"/api/v1/accounts/{body['id']}/api-keys", headers=ADMIN)
    assert keys.status_code == 200
    (key,) = keys.json()["items"]
    assert body["api_key"].startswith(key["prefix"] + "_")
    assert body["api_key"] not in keys.text
    assert body["api_key"].split("_", 2)[2] not in keys.text


async def test_account_names_are_unique(client: httpx.AsyncClient) -> None:
    creds = await new_account(client)
    resp = await client.post("/api/v1/accounts", json={"name": "dup-name"}, headers=ADMIN)
    assert resp.status_code == 201
    again = await client.post("/api/v1/accounts", json={"name": "dup-name"}, headers=ADMIN)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["field"] == "name"
    bad = await client.post("/api/v1/accounts", json={"name": ""}, headers=ADMIN)
    assert (bad.status_code, bad.json()["field"]) == (422, "name")
    forbidden = await client.post("/api/v1/accounts", json={"name": "x"}, headers=creds.headers)
    assert forbidden.status_code == 403
    assert (await client.get("/api/v1/accounts", headers=creds.headers)).status_code == 403


async def test_accounts_list_pages_with_an_opaque_cursor(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await new_account(client)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/accounts", headers=ADMIN, params=params)).json()
        assert len(page["items"]) <= 2
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = (await client.get("/api/v1/accounts", headers=ADMIN, params={"limit": 200})).json()["items"]
    assert seen == [a["id"] for a in everything]
    assert len(seen) == len(set(seen)) >= 3
    bad = await client.get("/api/v1/accounts", headers=ADMIN, params={"cursor": "garbage"})
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")
    too_many = await client.get("/api/v1/accounts", headers=ADMIN, params={"limit": 201})
    assert (too_many.status_code, too_many.json()["field"]) == (422, "limit")


async def test_an_account_manages_its_own_keys_only(client: httpx.AsyncClient, account: AccountCreds) -> None:
    other = await new_account(client)
    issued = await client.post(f"/api/v1/accounts/{account.id}/api-keys", headers=account.headers)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert set(key) == {"id", "api_key", "prefix", "created_at"}
    assert key["api_key"].startswith(f"ak_{key['id']}_")
    assert key["prefix"] == f"ak_{key['id']}"
    second = AccountCreds(id=account.id, api_key=key["api_key"])
    assert (await client.get("/api/v1/jobs", headers=second.headers)).status_code == 200
    for method, path in [
        ("POST", f"/api/v1/accounts/{other.id}/api-keys"),
        ("GET", f"/api/v1/accounts/{other.id}/api-keys"),
        ("GET", f"/api/v1/accounts/{other.id}"),
        ("DELETE", f"/api/v1/accounts/{other.id}/api-keys/{key['id']}"),
    ]:
        resp = await client.request(method, path, headers=account.headers)
        assert resp.status_code == 404, (method, path, resp.text)
    mine = (await client.get(f"/api/v1/accounts/{account.id}", headers=account.headers)).json()
    assert mine["id"] == account.id
    listed = (await client.get(f"/api/v1/accounts/{account.id}/api-keys", headers=account.headers)).json()
    assert key["id"] in {k["id"] for k in listed["items"]}
    assert listed["next_cursor"] is None
    admin_issued = await client.post(f"/api/v1/accounts/{other.id}/api-keys", headers=ADMIN)
    assert admin_issued.status_code == 201


async def test_a_revoked_key_is_refused(client: httpx.AsyncClient, account: AccountCreds) -> None:
    key = (await client.post(f"/api/v1/accounts/{account.id}/api-keys", headers=account.headers)).json()
    doomed = {"Authorization": f"Bearer {key['api_key']}"}
    assert (await client.get("/api/v1/jobs", headers=doomed)).status_code == 200
    revoked = await client.delete(f"/api/v1/accounts/{account.id}/api-keys/{key['id']}", headers=account.headers)
    assert revoked.status_code == 204
    refused = await client.get("/api/v1/jobs", headers=doomed)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    again = await client.delete(f"/api/v1/accounts/{account.id}/api-keys/{key['id']}", headers=account.headers)
    assert again.status_code == 204
    unknown = await client.delete(f"/api/v1/accounts/{account.id}/api-keys/0123456789abcdef", headers=account.headers)
    assert unknown.status_code == 404
    listed = (await client.get(f"/api/v1/accounts/{account.id}/api-keys", headers=account.headers)).json()
    assert {k["id"]: k["revoked_at"] is not None for k in listed["items"]}[key["id"]] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-credential"},
        {"Authorization": "Bearer ak_0123456789abcdef_" + "A" * 43},
        {"X-API-Key": "ak_0123456789abcdef_" + "A" * 43},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer " + "t" * 31},
    ],
)
async def test_missing_or_wrong_credentials_are_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for path in ("/api/v1/jobs", "/api/v1/executions", "/api/v1/accounts", "/api/v1/auth/token"):
        method = "POST" if path.endswith("token") else "GET"
        resp = await client.request(method, path, headers=headers)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_a_wrong_secret_for_a_real_key_id_is_401(client: httpx.AsyncClient, account: AccountCreds) -> None:
    key_id = account.api_key.split("_")[1]
    forged = f"ak_{key_id}_" + "B" * 43
    assert (await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_an_api_key_in_x_api_key_works(client: httpx.AsyncClient, account: AccountCreds) -> None:
    assert (await client.get("/api/v1/jobs", headers={"X-API-Key": account.api_key})).status_code == 200


async def test_an_api_key_is_exchanged_for_a_jwt_every_service_can_verify(
    client: httpx.AsyncClient, account: AccountCreds, settings: JobApiSettings
) -> None:
    resp = await client.post("/api/v1/auth/token", headers=account.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.jwt_ttl_seconds
    principal = verify_token(settings, body["access_token"])
    assert str(principal.account_id) == account.id
    assert not principal.is_admin
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"], issuer=settings.jwt_issuer)
    assert claims["sub"] == account.id
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/api/v1/jobs", headers=bearer)).status_code == 200
    refresh = await client.post("/api/v1/auth/token", headers=bearer)
    assert refresh.status_code == 403  # only an API key buys a token, so revoking keys ends the chain
    assert (await client.post("/api/v1/auth/token", headers=ADMIN)).status_code == 403


async def test_a_jwt_from_issue_token_and_the_admin_token(
    client: httpx.AsyncClient, account: AccountCreds, settings: JobApiSettings
) -> None:
    token, _ = issue_token(settings, account_id=uuid.UUID(account.id))
    assert (await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    expired, _ = issue_token(settings, account_id=uuid.UUID(account.id), ttl=-60)
    assert (await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {expired}"})).status_code == 401
    admin_on_jobs = await client.get("/api/v1/jobs", headers=ADMIN)
    assert admin_on_jobs.status_code == 403
    assert admin_on_jobs.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/executions", headers=ADMIN)).status_code == 403


async def test_keys_issued_are_counted(client: httpx.AsyncClient, account: AccountCreds) -> None:
    def issued(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("automation_api_keys_issued_total "))
        return float(line.split()[1])

    before = issued((await client.get("/metrics")).text)
    await client.post(f"/api/v1/accounts/{account.id}/api-keys", headers=account.headers)
    await new_account(client)
    assert issued((await client.get("/metrics")).text) == before + 2


async def test_openapi_documents_tags_summaries_and_problem_json(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert {t["name"] for t in doc["tags"]} >= {"accounts", "auth", "jobs", "executions", "dead-letters"}
    expected = {
        ("/api/v1/accounts", "post"),
        ("/api/v1/accounts/{account_id}/api-keys", "post"),
        ("/api/v1/accounts/{account_id}/api-keys/{key_id}", "delete"),
        ("/api/v1/auth/token", "post"),
        ("/api/v1/jobs", "post"),
        ("/api/v1/jobs/{job_id}", "put"),
        ("/api/v1/jobs/{job_id}/enable", "post"),
        ("/api/v1/jobs/{job_id}/disable", "post"),
        ("/api/v1/jobs/{job_id}/execute", "post"),
        ("/api/v1/executions", "get"),
        ("/api/v1/executions/{execution_id}", "get"),
        ("/api/v1/executions/{execution_id}/logs", "get"),
        ("/api/v1/executions/{execution_id}/cancel", "post"),
        ("/api/v1/dead-letters", "get"),
        ("/api/v1/dead-letters/{letter_id}", "get"),
        ("/api/v1/dead-letters/{letter_id}", "delete"),
        ("/api/v1/dead-letters/{letter_id}/requeue", "post"),
        ("/api/v1/dead-letters/purge", "post"),
    }
    for path, method in expected:
        operation = doc["paths"][path][method]
        assert operation["summary"], (path, method)
        assert operation["tags"], (path, method)
        assert "application/problem+json" in operation["responses"]["401"]["content"], (path, method)
    get_job = doc["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]
    assert get_job["404"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    logs = doc["paths"]["/api/v1/executions/{execution_id}/logs"]["get"]["responses"]["200"]["content"]
    assert {"text/plain", "text/event-stream"} <= set(logs)
    assert "JobDefinition" in doc["components"]["schemas"]
