"""One emulator, several customer tenants: tokens from the real azure-identity
ClientAssertionCredential (federated credential = the app's managed identity), Graph routed
by the token's tenant, Exchange refusing a URL that names another tenant, consent withdrawal
refusing new and issued tokens, and each tenant throttled on its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from devtools.emulator import EmulatorServer, load_tenant, make_tenant
from devtools.emulator.authz import make_jwt, read_jwt
from devtools.tokens import (
    FEDERATED_AUDIENCE,
    LoopbackTransport,
    emulator_assertion,
    emulator_credential_factory,
    managed_identity_issuer,
)

from .conftest import DEMO, TENANT_ID

GRAPH = "https://graph.microsoft.com/.default"
EXCHANGE = "https://outlook.office365.com/.default"
TENANT_B = "7a1e4c2d-9b3f-4e5a-8c6d-0f1e2d3c4b5a"
APP_CLIENT_ID = "4f9c2e1a-7b6d-4a3c-9e8f-1d2c3b4a5e6f"
MI_PRINCIPAL = "2b8d6f4a-1c3e-4f5a-9b7d-8e6c4a2f0d13"
FIXED = "fixed-multitenant-token"


def assertion() -> str:
    """The managed identity token the app's federated credential trusts."""
    return emulator_assertion(tenant_id=TENANT_ID, principal_id=MI_PRINCIPAL)


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """The demo tenant (default, A) and a generated tenant B on one emulator, with the
    app's federated identity credential configured."""
    with EmulatorServer(load_tenant(DEMO), token=FIXED, seed=7) as srv:
        srv.add_tenant(make_tenant(4, seed=3, domain="fabrikam.com"), tenant_id=TENANT_B)
        srv.federate(app_client_id=APP_CLIENT_ID, issuer=managed_identity_issuer(TENANT_ID),
                     subject=MI_PRINCIPAL)
        yield srv


@pytest.fixture
async def credentials(server: EmulatorServer) -> AsyncIterator[Any]:
    """`make(tenant, client_id=..., assertion=...)`: real ClientAssertionCredentials, closed
    at the end."""
    made: list[Any] = []

    def make(tenant: str, *, client_id: str = APP_CLIENT_ID,
             assertion_fn: Any = assertion) -> Any:
        cred = emulator_credential_factory(server.base_url, client_id, assertion_fn)(tenant)
        made.append(cred)
        return cred

    yield make
    for cred in made:
        await cred.close()


def call(server: EmulatorServer, method: str, path: str, token: str,
         **kw: Any) -> httpx.Response:
    """One Graph or Exchange call with a bearer token (the emulator runs in its own
    thread, so a blocking call from an async test is fine)."""
    return httpx.request(method, server.base_url + path,
                         headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw)


def upns(server: EmulatorServer, token: str) -> set[str]:
    r = httpx.get(server.base_url + "/v1.0/users", params={"$select": "userPrincipalName"},
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {u["userPrincipalName"] for u in r.json()["value"]}


def invoke(server: EmulatorServer, token: str, tenant: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/adminapi/beta/{tenant}/InvokeCommand",
                      json={"CmdletInput": {"CmdletName": "Get-Mailbox",
                                            "Parameters": {"ResultSize": 1}}},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)


async def test_each_tenants_token_reads_only_that_tenant(server, credentials) -> None:
    a = (await credentials(TENANT_ID).get_token(GRAPH)).token
    b = (await credentials(TENANT_B).get_token(GRAPH)).token
    claims_a, claims_b = read_jwt(a), read_jwt(b)
    assert claims_a is not None and claims_b is not None
    assert (claims_a["tid"], claims_b["tid"]) == (TENANT_ID, TENANT_B)
    assert claims_a["aud"] == "https://graph.microsoft.com"
    assert claims_a["appid"] == APP_CLIENT_ID
    assert "User.Read.All" in claims_b["roles"] and "Exchange.ManageAsApp" not in claims_b[
        "roles"]

    users_a, users_b = upns(server, a), upns(server, b)
    assert users_a == {u["userPrincipalName"] for u in server.state()["users"]}
    assert users_b == {u["userPrincipalName"]
                       for u in server.tenant_of(TENANT_B).dump()["users"]}
    assert users_a and users_b and not users_a & users_b
    assert all(u.endswith(("@fabrikam.com", "@fabrikam.onmicrosoft.com")) for u in users_b)

    graph_calls = [e for e in server.requests() if e["api"] == "graph"]
    assert [e["tenant"] for e in graph_calls] == [TENANT_ID, TENANT_B]
    tokens = [e for e in server.requests() if e["api"] == "identity"]
    assert [(e["tenant"], e["status"]) for e in tokens] == [(TENANT_ID, 200), (TENANT_B, 200)]
    assert tokens[0]["body"] == {"grant_type": "client_credentials",
                                 "client_id": APP_CLIENT_ID, "scope": GRAPH}
    log = json.dumps(server.requests())
    assert "client_assertion" not in log and a not in log  # neither secret is logged


async def test_the_fixed_token_stays_the_default_tenants(server) -> None:
    assert upns(server, FIXED) == {u["userPrincipalName"] for u in server.state()["users"]}
    assert invoke(server, FIXED, TENANT_ID).status_code == 200
    r = invoke(server, FIXED, TENANT_B)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_the_default_tenants_consent_governs_the_fixed_token(server) -> None:
    server.withdraw_consent(TENANT_ID)
    r = call(server, "GET", "/v1.0/users", FIXED)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    server.grant_consent(TENANT_ID, ["User.Read.All"])
    assert upns(server, FIXED)
    user = quote(sorted(upns(server, FIXED))[0], safe="@")  # a guest's UPN holds '#'
    assert call(server, "POST", f"/v1.0/users/{user}/revokeSignInSessions",
                FIXED).status_code == 403  # narrowed to what was consented
    server.grant_consent(TENANT_ID)
    assert call(server, "POST", f"/v1.0/users/{user}/revokeSignInSessions",
                FIXED).status_code in (200, 204)


async def test_exchange_refuses_a_url_naming_another_tenant(server, credentials) -> None:
    a = (await credentials(TENANT_ID).get_token(EXCHANGE)).token
    assert read_jwt(a)["roles"] == ["Exchange.ManageAsApp"]
    assert invoke(server, a, TENANT_ID).status_code == 200
    assert invoke(server, a, "contoso.com").status_code == 200  # its own domain
    for other in (TENANT_B, "fabrikam.com"):
        r = invoke(server, a, other)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    b = (await credentials(TENANT_B).get_token(EXCHANGE)).token
    assert invoke(server, b, TENANT_B).status_code == 200
    assert invoke(server, b, TENANT_ID).status_code == 401
    writes = [e for e in server.requests() if e["api"] == "exchange" and e["status"] == 200]
    assert [e["tenant"] for e in writes] == [TENANT_ID, TENANT_ID, TENANT_B]


async def test_a_token_is_for_one_resource(server, credentials) -> None:
    exchange = (await credentials(TENANT_ID).get_token(EXCHANGE)).token
    r = call(server, "GET", "/v1.0/users", exchange)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    graph = (await credentials(TENANT_ID).get_token(GRAPH)).token
    assert invoke(server, graph, TENANT_ID).status_code == 401


async def test_withdrawn_consent_refuses_new_and_issued_tokens(server, credentials) -> None:
    before = (await credentials(TENANT_B).get_token(GRAPH)).token
    assert upns(server, before)
    server.withdraw_consent(TENANT_B)

    with pytest.raises(ClientAuthenticationError) as caught:
        await credentials(TENANT_B).get_token(GRAPH)
    assert "AADSTS700016" in caught.value.message and APP_CLIENT_ID in caught.value.message
    r = call(server, "GET", "/v1.0/users", before)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken" and "request-id" in error["innerError"]
    assert upns(server, (await credentials(TENANT_ID).get_token(GRAPH)).token)  # A unharmed

    server.grant_consent(TENANT_B)
    again = (await credentials(TENANT_B).get_token(GRAPH)).token
    assert upns(server, again)
    r = call(server, "GET", "/v1.0/users", before)
    assert r.status_code == 401  # issued under the withdrawn consent: stays refused


async def test_partial_consent_narrows_the_tokens_roles(server, credentials) -> None:
    server.grant_consent(TENANT_B, ["User.Read.All"])
    graph = (await credentials(TENANT_B).get_token(GRAPH)).token
    assert read_jwt(graph)["roles"] == ["User.Read.All"]
    assert upns(server, graph)
    user = next(iter(upns(server, graph)))
    r = call(server, "POST", f"/v1.0/users/{user}/revokeSignInSessions", graph)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"
    exchange = (await credentials(TENANT_B).get_token(EXCHANGE)).token
    assert read_jwt(exchange)["roles"] == []
    assert invoke(server, exchange, TENANT_B).status_code == 401


def _payload(**claims: Any) -> str:
    now = int(time.time())
    base = {"aud": FEDERATED_AUDIENCE, "iss": managed_identity_issuer(TENANT_ID),
            "sub": MI_PRINCIPAL, "iat": now, "nbf": now, "exp": now + 600}
    base.update(claims)
    return make_jwt({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(("client_id", "assertion_fn", "code"), [
    ("0d0d0d0d-1111-2222-3333-444444444444", assertion, "AADSTS700016"),
    (APP_CLIENT_ID, lambda: _payload(sub="0e0e0e0e-5555-6666-7777-888888888888"),
     "AADSTS700213"),
    (APP_CLIENT_ID, lambda: _payload(iss=managed_identity_issuer(TENANT_B)), "AADSTS700211"),
    (APP_CLIENT_ID, lambda: _payload(aud="api://AzureADMyOrg"), "AADSTS700212"),
    (APP_CLIENT_ID, lambda: _payload(exp=int(time.time()) - 5), "AADSTS700024"),
    (APP_CLIENT_ID, lambda: "not-a-jwt", "AADSTS50027"),
], ids=["client-id", "subject", "issuer", "audience", "expired", "not-a-jwt"])
async def test_a_wrong_client_id_or_assertion_is_refused(server, credentials, client_id,
                                                         assertion_fn, code) -> None:
    with pytest.raises(ClientAuthenticationError) as caught:
        await credentials(TENANT_B, client_id=client_id, assertion_fn=assertion_fn
                          ).get_token(GRAPH)
    assert code in caught.value.message
    entry = [e for e in server.requests() if e["api"] == "identity"][-1]
    assert entry["status"] in (400, 401) and entry["error_codes"] == [int(code[6:])]


def test_token_endpoint_answers_entras_error_shape(server) -> None:
    form = {"grant_type": "client_credentials", "client_id": APP_CLIENT_ID, "scope": GRAPH,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion()}
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        ok = c.post(f"/{TENANT_B}/oauth2/v2.0/token", data=form)
        assert ok.status_code == 200
        assert set(ok.json()) == {"token_type", "expires_in", "access_token"}
        assert ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] > 0
        assert read_jwt(c.post("/fabrikam.com/oauth2/v2.0/token", data=form
                               ).json()["access_token"])["tid"] == TENANT_B  # a domain

        cases = {
            "/00000000-0000-0000-0000-00000000dead/oauth2/v2.0/token": ({}, 400, 90002),
            f"/{TENANT_B}/oauth2/v2.0/token": ({"client_secret": "s3cret"}, 401, 7000215),
            f"/{TENANT_ID}/oauth2/v2.0/token": (
                {"scope": "https://management.azure.com/.default"}, 400, 70011),
        }
        for path, (change, status, code) in cases.items():
            r = c.post(path, data={**form, **change})
            body = r.json()
            assert r.status_code == status, body
            assert body["error_codes"] == [code]
            assert body["error_description"].startswith(f"AADSTS{code}: ")
            assert {"error", "timestamp", "trace_id", "correlation_id"} <= set(body)
        no_grant = c.post(f"/{TENANT_B}/oauth2/v2.0/token",
                          data={k: v for k, v in form.items() if k != "grant_type"})
        assert no_grant.status_code == 400 and no_grant.json()["error"] == "invalid_request"
        assert c.get(f"/{TENANT_B}/oauth2/v2.0/token").json()["error_codes"] == [900561]


def test_control_api_hosts_tenants_and_their_consent(server) -> None:
    base = server.base_url + "/_emulator"
    form = {"grant_type": "client_credentials", "client_id": APP_CLIENT_ID, "scope": GRAPH,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion()}
    c_id = str(uuid.uuid4())
    with httpx.Client(timeout=10) as c:
        r = c.post(base + "/tenants", json={"generate": {"n_users": 3, "seed": 5,
                                                          "domain": "northwind.com"},
                                             "tenantId": c_id, "consented": False})
        assert r.status_code == 201 and r.json() == {"tenantId": c_id}
        listed = {t["tenantId"]: t for t in c.get(base + "/tenants").json()}
        assert listed[TENANT_ID]["default"] and listed[c_id]["consented"] is False
        assert c.post(base + "/tenants", json={"seed": {"domains": ["northwind.com"]}}
                      ).status_code == 400  # a domain already hosted
        token_url = f"{server.base_url}/{c_id}/oauth2/v2.0/token"
        assert c.post(token_url, data=form).json()["error_codes"] == [700016]
        r = c.post(f"{base}/tenants/{c_id}/consent", json={"permissions": ["User.Read.All"]})
        assert r.status_code == 200 and r.json()["permissions"] == ["User.Read.All"]
        token = c.post(token_url, data=form).json()["access_token"]
        users = c.get(server.base_url + "/v1.0/users",
                      headers={"Authorization": f"Bearer {token}"}).json()["value"]
        state = c.get(f"{base}/tenants/northwind.com/state").json()
        assert {u["id"] for u in users} == {u["id"] for u in state["users"]}
        assert [e["status"] for e in c.get(f"{base}/tenants/{c_id}/log").json()
                if e["api"] == "graph"] == [200]
        assert c.delete(f"{base}/tenants/{c_id}/consent").status_code == 204
        assert c.get(server.base_url + "/v1.0/users",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_token_for_a_tenant_not_hosted_is_refused(server) -> None:
    stranger = make_jwt({"tid": str(uuid.uuid4()), "idtyp": "app", "roles": ["User.Read.All"],
                         "aud": "https://graph.microsoft.com"})
    r = httpx.get(server.base_url + "/v1.0/users",
                  headers={"Authorization": f"Bearer {stranger}"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert server.requests()[-1]["tenant"] is None


async def test_a_batch_item_cannot_switch_tenant(server, credentials) -> None:
    a = (await credentials(TENANT_ID).get_token(GRAPH)).token
    b = (await credentials(TENANT_B).get_token(GRAPH)).token
    body = {"requests": [
        {"id": "1", "method": "GET", "url": "/users?$select=id"},
        {"id": "2", "method": "GET", "url": "/users?$select=id",
         "headers": {"Authorization": f"Bearer {b}"}}]}
    r = call(server, "POST", "/v1.0/$batch", a, json=body)
    statuses = {x["id"]: x["status"] for x in r.json()["responses"]}
    assert statuses == {"1": 200, "2": 401}


async def test_identity_protection_limit_is_per_tenant(server, credentials) -> None:
    server.configure(throttle={"identity_protection": {"rps": 1, "burst": 1}})
    a = (await credentials(TENANT_ID).get_token(GRAPH)).token
    b = (await credentials(TENANT_B).get_token(GRAPH)).token

    def risky(token: str) -> int:
        return httpx.get(server.base_url + "/v1.0/identityProtection/riskyUsers",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

    assert risky(a) == 200
    assert risky(a) == 429  # A's bucket is empty for a second...
    assert risky(b) == 200  # ...B's is its own


async def test_the_transport_only_talks_to_loopback() -> None:
    with pytest.raises(ValueError):
        LoopbackTransport("http://192.0.2.10:8080")
    with pytest.raises(ValueError):
        emulator_credential_factory("https://127.0.0.1:1", APP_CLIENT_ID, assertion)
    t = LoopbackTransport("http://127.0.0.1:4321")
    assert t.target("https://login.emulator.invalid/t/oauth2/v2.0/token?x=1") == \
        "http://127.0.0.1:4321/t/oauth2/v2.0/token?x=1"
