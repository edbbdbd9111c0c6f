"""Auth, error shape, user lookup (ids, UPNs with apostrophes), filters, paging, writes."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from devtools.emulator import EmulatorServer, make_tenant

from .conftest import AUTH, BREAKGLASS, CA_GROUP, LEE_FEDERATED, MEGAN, OBRIEN


def test_missing_or_wrong_token_is_401_in_graph_shape(server, client):
    r = httpx.get(server.base_url + "/v1.0/users", timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    r = httpx.get(server.base_url + "/v1.0/users", headers={"Authorization": "Bearer nope"},
                  timeout=5)
    assert r.status_code == 401
    r = client.post("/adminapi/beta/x/InvokeCommand", headers={"Authorization": "Bearer x"},
                    json={})
    assert r.status_code == 401


def test_error_shape_and_request_ids(client):
    r = client.get("/v1.0/users/nobody@contoso.com", headers={"client-request-id": "abc-123"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == "Request_ResourceNotFound"
    assert err["message"]
    inner = err["innerError"]
    assert inner["client-request-id"] == "abc-123" == r.headers["client-request-id"]
    assert inner["request-id"] == r.headers["request-id"]
    assert inner["date"].startswith("20")


def test_unknown_segment_is_400(client):
    r = client.get("/v1.0/userz")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BadRequest"
    assert "segment" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", [
    "/v1.0/users/o'brien@contoso.com",
    "/v1.0/users/o%27brien%40contoso.com",
    "/v1.0/users/O'Brien@Contoso.com",
    f"/v1.0/users/{OBRIEN}",
])
def test_user_by_id_or_upn(client, path):
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == OBRIEN
    assert r.json()["userPrincipalName"] == "o'brien@contoso.com"


def test_guest_upn_with_hash_is_addressable(client):
    upn = "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    r = client.get("/v1.0/users/" + quote(upn, safe="@"))
    assert r.status_code == 200
    assert r.json()["userType"] == "Guest"


def test_filter_with_doubled_quote(client):
    r = client.get("/v1.0/users", params={"$filter": "userPrincipalName eq 'o''brien@contoso.com'"})
    assert r.status_code == 200
    assert [u["id"] for u in r.json()["value"]] == [OBRIEN]
    r = client.get("/v1.0/users", params={"$filter": "mail eq 'MEGAN@contoso.com' or "
                                          "(accountEnabled eq false and userType eq 'Guest')"})
    assert [u["id"] for u in r.json()["value"]] == [MEGAN]


@pytest.mark.parametrize("flt", [
    "userPrincipalName eq 'o'brien@contoso.com'",
    "userPrincipalName eq",
    "(userPrincipalName eq 'a'",
    "userPrincipalName equals 'a'",
    "nosuchfield eq 'a'",
    "",
    "accountEnabled eq true)",
])
def test_malformed_filter_is_400_not_500(client, flt):
    r = client.get("/v1.0/users", params={"$filter": flt} if flt else {"$filter": " "})
    if flt == "":
        assert r.status_code in (200, 400)
        return
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BadRequest"


def test_paging_collects_all_pages():
    seed = make_tenant(250, offenders={}, seed=1)
    with EmulatorServer(seed) as srv, httpx.Client(headers=AUTH, timeout=10) as c:
        url = srv.base_url + "/v1.0/users?$select=id,userPrincipalName"
        ids, pages = [], 0
        while url:
            body = c.get(url).json()
            pages += 1
            ids += [u["id"] for u in body["value"]]
            assert set(body["value"][0]) <= {"id", "userPrincipalName"}
            url = body.get("@odata.nextLink")
        assert pages == 3
        assert len(ids) == len(set(ids)) == 251
        r = c.get(srv.base_url + "/v1.0/users", params={"$top": "1000"})
        assert r.status_code == 400
        body = c.get(srv.base_url + "/v1.0/users", params={"$top": "7", "$filter":
                                                           "accountEnabled eq true"}).json()
        assert len(body["value"]) == 7
        assert "%24filter=" in body["@odata.nextLink"] or "$filter=" in body["@odata.nextLink"]


def test_patch_account_and_password_never_stored_in_clear(server, client):
    secret = "Xy7!correct-horse-battery"
    r = client.patch(f"/v1.0/users/{MEGAN}", json={
        "accountEnabled": False,
        "passwordProfile": {"password": secret, "forceChangePasswordNextSignIn": True}})
    assert r.status_code == 204
    state = server.state()
    megan = next(u for u in state["users"] if u["id"] == MEGAN)
    assert megan["accountEnabled"] is False
    assert megan["passwordChangeCount"] == 1
    assert megan["forceChangePasswordNextSignIn"] is True
    assert secret not in json.dumps(state)
    assert secret not in json.dumps(server.requests())
    assert server.requests()[-1]["body"]["passwordProfile"]["password"] == "<redacted>"
    assert server.tenant.check_password(MEGAN, secret)
    assert not server.tenant.check_password(MEGAN, "other")
    for what in ("state", "log"):
        assert secret not in httpx.get(f"{server.base_url}/_emulator/{what}", timeout=5).text


def test_password_rules(client):
    r = client.patch(f"/v1.0/users/{LEE_FEDERATED}",
                     json={"passwordProfile": {"password": "Xy7!abcdefgh"}})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "Request_BadRequest"
    assert "federated" in r.json()["error"]["message"].lower()
    r = client.patch(f"/v1.0/users/{MEGAN}", json={"passwordProfile": {"password": "short"}})
    assert r.status_code == 400
    r = client.patch(f"/v1.0/users/{MEGAN}", json={"favouriteColour": "blue"})
    assert r.status_code == 400


DIEGO_SYNCED = "a7c4f0d5-9e6b-4b1a-8d84-5c0f3e1b7a46"


def test_synced_user_refuses_password_and_account_enabled_writes(server, client):
    """On-premises-mastered users: the cloud refuses passwordProfile and accountEnabled."""
    for body in ({"passwordProfile": {"password": "Xy7!abcdefgh",
                                      "forceChangePasswordNextSignIn": True}},
                 {"accountEnabled": False}):
        r = client.patch(f"/v1.0/users/{DIEGO_SYNCED}", json=body)
        assert r.status_code == 400, body
        err = r.json()["error"]
        assert err["code"] == "Request_BadRequest" and "on-premises" in err["message"]
        assert err["innerError"]["request-id"]
    diego = next(u for u in server.state()["users"] if u["id"] == DIEGO_SYNCED)
    assert diego["accountEnabled"] is True and diego["passwordChangeCount"] == 0
    assert not server.tenant.check_password(DIEGO_SYNCED, "Xy7!abcdefgh")
    # other properties of a synced user are not refused by this rule
    assert client.patch(f"/v1.0/users/{DIEGO_SYNCED}",
                        json={"jobTitle": "HR"}).status_code == 204
    # a cloud-only user is unaffected
    assert client.patch(f"/v1.0/users/{OBRIEN}", json={"accountEnabled": False}).status_code \
        == 204


def test_revoke_for_a_guest_succeeds_but_ends_no_home_session(server, client):
    guest = "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    r = client.post("/v1.0/users/" + quote(guest, safe="@") + "/revokeSignInSessions")
    assert r.status_code == 200 and r.json()["value"] is True
    users = {u["userPrincipalName"]: u for u in server.state()["users"]}
    assert users[guest]["sessionsRevokedCount"] == 1
    assert users[guest]["homeSessionsNotRevokedCount"] == 1
    client.post(f"/v1.0/users/{MEGAN}/revokeSignInSessions")
    assert "homeSessionsNotRevokedCount" not in next(
        u for u in server.state()["users"] if u["id"] == MEGAN)


def test_revoke_sessions_counts(server, client):
    r = client.post(f"/v1.0/users/{MEGAN}/revokeSignInSessions")
    assert r.status_code == 200 and r.json()["value"] is True
    client.post("/v1.0/users/megan@contoso.com/revokeSignInSessions")
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)
    assert megan["sessionsRevokedCount"] == 2
    assert megan["signInSessionsValidFromDateTime"]


def test_gets_do_not_write_and_writes_are_logged(server, client):
    for path in ["/v1.0/users", f"/v1.0/users/{MEGAN}/authentication/methods",
                 f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules",
                 "/v1.0/identityProtection/riskyUsers", "/v1.0/domains"]:
        assert client.get(path).status_code == 200
    client.post(f"/v1.0/users/{MEGAN}/checkMemberGroups", json={"groupIds": [CA_GROUP]})
    log = server.requests()
    assert len(log) == 6 and not any(e["write"] for e in log)
    client.patch("/v1.0/users/nobody", json={"accountEnabled": False})
    assert not server.requests()[-1]["write"]
    client.patch(f"/v1.0/users/{MEGAN}", json={"accountEnabled": False})
    last = server.requests()[-1]
    assert last["write"] and last["method"] == "PATCH" and last["cls"] == "directory_write"
    assert last["path"] == f"/v1.0/users/{MEGAN}" and last["body"] == {"accountEnabled": False}
    server.clear_log()
    assert server.requests() == []


def test_member_of_roles_and_check_member_groups(client):
    body = client.get(f"/v1.0/users/{BREAKGLASS}/memberOf").json()
    types = {i["@odata.type"] for i in body["value"]}
    assert types == {"#microsoft.graph.group", "#microsoft.graph.directoryRole"}
    role = next(i for i in body["value"] if i["@odata.type"].endswith("directoryRole"))
    assert role["roleTemplateId"] == "62e90394-69f5-4237-9190-012177145e10"
    assert role["displayName"] == "Global Administrator"
    r = client.post(f"/v1.0/users/{MEGAN}/checkMemberGroups",
                    json={"groupIds": [CA_GROUP, "7b2eac50-4d9f-4e63-9077-2c3d4e5f6071"]})
    assert r.json()["value"] == ["7b2eac50-4d9f-4e63-9077-2c3d4e5f6071"]


def test_domains_show_federation(client):
    doms = {d["id"]: d["authenticationType"] for d in client.get("/v1.0/domains").json()["value"]}
    assert doms["fed.contoso.com"] == "Federated"
    assert doms["contoso.com"] == "Managed"


def test_state_dump_reloads(server):
    dump = server.state()
    again = EmulatorServer(dump).state()
    assert again["users"] == dump["users"]
    assert again["riskDetections"] == dump["riskDetections"]
