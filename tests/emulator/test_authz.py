"""Authorization like Entra's for app-only tokens: the permission table, directory-role rank
for password and accountEnabled writes, the Exchange role, and the licence probe."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from devtools.emulator import EmulatorServer, load_tenant
from devtools.emulator.authz import RULES, app_grant_from_file
from devtools.emulator.graph_routes import ROUTER
from tests.emulator.conftest import DEMO, MEGAN, TENANT_ID, invoke

ADELE_USER_ADMIN = "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"
PW = {"passwordProfile": {"password": "Xy7!abcdefghJK", "forceChangePasswordNextSignIn": True}}


@pytest.fixture
def srv() -> Iterator[EmulatorServer]:
    with EmulatorServer(load_tenant(DEMO), seed=3) as server:
        yield server


def call(srv: EmulatorServer, token: str, method: str, path: str, **kw: object) -> httpx.Response:
    with httpx.Client(base_url=srv.base_url, timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        return c.request(method, path, **kw)  # type: ignore[arg-type]


def test_every_graph_route_has_a_row_in_the_table():
    rows = {(r.method, r.path.lower()) for r in RULES if r.api == "graph"}
    routes = {(r.method, "/".join(r.parts).lower()) for r in ROUTER.routes}
    assert routes - rows == set(), "add these routes to devtools/emulator/authz.py RULES"


def test_token_is_jwt_shaped_with_entra_claims(srv):
    token = srv.issue_token(["User.Read.All"], audience="exchange")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"
    assert claims["aud"] == "https://outlook.office365.com"
    assert claims["tid"] == TENANT_ID and claims["roles"] == ["User.Read.All"]
    assert claims["oid"] and claims["appid"] and signature


def test_missing_permission_is_graphs_403_and_higher_permissions_also_pass(srv):
    none = srv.issue_token([])
    r = call(srv, none, "GET", f"/v1.0/users/{MEGAN}")
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "Authorization_RequestDenied"
    assert err["message"] == "Insufficient privileges to complete the operation."
    assert err["innerError"]["request-id"] and err["innerError"]["date"]
    for perm in ("User.Read.All", "Directory.Read.All", "User.ReadWrite.All"):
        assert call(srv, srv.issue_token([perm]), "GET", f"/v1.0/users/{MEGAN}").status_code \
            == 200, perm
    log = srv.requests()
    assert log[0]["status"] == 403 and log[0]["authz"]["missing"] == "permission"
    assert ["User.Read.All"] in log[0]["authz"]["needs"][0]


def test_mail_calls_answer_outlooks_access_denied(srv):
    r = call(srv, srv.issue_token(["User.Read.All"]), "GET",
             f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    r = call(srv, srv.issue_token(["MailboxSettings.Read"]), "GET",
             f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules")
    assert r.status_code == 200


def test_password_reset_needs_permission_and_a_role_that_outranks_the_target(srv):
    perm = ["User-PasswordProfile.ReadWrite.All"]
    assert call(srv, srv.issue_token(perm, directory_roles=[]), "PATCH",
                f"/v1.0/users/{MEGAN}", json=PW).status_code == 403
    assert call(srv, srv.issue_token(["User.Read.All"], directory_roles=["User Administrator"]),
                "PATCH", f"/v1.0/users/{MEGAN}", json=PW).status_code == 403
    assert call(srv, srv.issue_token(perm, directory_roles=["User Administrator"]), "PATCH",
                f"/v1.0/users/{MEGAN}", json=PW).status_code == 204
    # a target holding an admin role: User Administrator is not enough
    r = call(srv, srv.issue_token(perm, directory_roles=["User Administrator"]), "PATCH",
             f"/v1.0/users/{ADELE_USER_ADMIN}", json=PW)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"
    assert srv.requests()[-1]["authz"]["missing"] == "role"
    assert call(srv, srv.issue_token(perm, directory_roles=["Privileged Authentication "
                                                           "Administrator"]),
                "PATCH", f"/v1.0/users/{ADELE_USER_ADMIN}", json=PW).status_code == 204


def test_account_enabled_needs_the_documented_pair(srv):
    body = {"accountEnabled": False}
    alone = srv.issue_token(["User.EnableDisableAccount.All"])
    assert call(srv, alone, "PATCH", f"/v1.0/users/{MEGAN}", json=body).status_code == 403
    pair = srv.issue_token(["User.EnableDisableAccount.All", "User.Read.All"])
    assert call(srv, pair, "PATCH", f"/v1.0/users/{MEGAN}", json=body).status_code == 204
    no_role = srv.issue_token(["User.EnableDisableAccount.All", "User.Read.All"],
                              directory_roles=[])
    assert call(srv, no_role, "PATCH", f"/v1.0/users/{MEGAN}", json=body).status_code == 403


def test_exchange_needs_manage_as_app_and_the_exchange_role(srv):
    def run(token: str) -> httpx.Response:
        with httpx.Client(base_url=srv.base_url, timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            return invoke(c, "Get-OrganizationConfig")

    graph_only = run(srv.issue_token(["User.Read.All"]))
    assert graph_only.status_code == 401
    assert "not allowed to call Get-OrganizationConfig" in \
        graph_only.json()["error"]["details"][0]["message"]
    assert run(srv.issue_token(["Exchange.ManageAsApp"], directory_roles=[])).status_code == 401
    assert run(srv.issue_token(["Exchange.ManageAsApp"],
                               directory_roles=["User Administrator"])).status_code == 401
    assert run(srv.issue_token(["Exchange.ManageAsApp"])).status_code == 200
    assert run(srv.token).status_code == 200


def test_fixed_token_holds_the_apps_full_grant_and_unknown_tokens_are_refused(srv):
    roles, _ = app_grant_from_file()
    assert "User.ReadWrite.All" not in roles
    r = call(srv, srv.token, "PATCH", f"/v1.0/users/{MEGAN}", json={"jobTitle": "x"})
    assert r.status_code == 403, "the app is not granted User.ReadWrite.All"
    assert call(srv, srv.token, "GET", f"/v1.0/users/{MEGAN}").status_code == 200
    assert call(srv, "not-a-token", "GET", f"/v1.0/users/{MEGAN}").status_code == 401
    forged = srv.issue_token(["User.Read.All"]).rsplit(".", 1)[0] + ".x"
    assert call(srv, forged, "GET", f"/v1.0/users/{MEGAN}").status_code == 401


def test_batch_items_are_authorized_one_by_one(srv):
    token = srv.issue_token(["User.Read.All"])
    body = {"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{MEGAN}"},
        {"id": "2", "method": "GET", "url": f"/users/{MEGAN}/authentication/methods"}]}
    r = call(srv, token, "POST", "/v1.0/$batch", json=body)
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["2"]["status"] == 403
    assert by_id["2"]["body"]["error"]["code"] == "Authorization_RequestDenied"


def test_unlicensed_tenant_refuses_identity_protection():
    seed = json.loads(DEMO.read_text())
    seed["licences"] = {"identityProtection": False}
    with EmulatorServer(seed) as server:
        r = call(server, server.token, "GET", "/v1.0/identityProtection/riskyUsers")
        assert r.status_code == 403
        assert r.json()["error"]["code"] == \
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        assert call(server, server.token, "GET", f"/v1.0/users/{MEGAN}").status_code == 200
        assert server.requests()[0]["authz"]["missing"] == "licence"


def test_seed_names_the_service_principal_and_its_roles():
    seed = json.loads(DEMO.read_text())
    sp = seed["servicePrincipal"]
    assert sp["id"] and sp["appId"] and sp["directoryRoles"]
    seed["servicePrincipal"] = {**sp, "directoryRoles": []}
    with EmulatorServer(seed) as server:
        token = server.issue_token(["User-PasswordProfile.ReadWrite.All"])
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["oid"] == sp["id"] and claims["appid"] == sp["appId"]
        r = call(server, token, "PATCH", f"/v1.0/users/{MEGAN}", json=PW)
        assert r.status_code == 403, "the service principal holds no directory role"


def test_membership_lists_show_directory_roles_with_limited_information(srv):
    admin = "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"
    path = f"/v1.0/users/{admin}/transitiveMemberOf"

    def roles(token: str) -> list[dict]:
        r = call(srv, token, "GET", path)
        assert r.status_code == 200
        return [v for v in r.json()["value"]
                if v["@odata.type"] == "#microsoft.graph.directoryRole"]

    [limited] = roles(srv.issue_token(["GroupMember.Read.All"]))
    assert set(limited) == {"@odata.type", "id"}
    [full] = roles(srv.issue_token(["GroupMember.Read.All", "RoleManagement.Read.Directory"]))
    assert full["roleTemplateId"] == "fe930be7-5e62-47db-91af-98c3a49a38b1"
