"""Role management and the app's service principal, over HTTP: the role assignments the
preflight reads (filter on principalId, expand roleDefinition), role definitions, and the
permission those reads need."""

from __future__ import annotations

import httpx

from devtools.emulator import EmulatorServer, load_tenant
from tests.emulator.conftest import DEMO

ASSIGNMENTS = "/v1.0/roleManagement/directory/roleAssignments"
EXCHANGE_ADMIN = "29232cdf-9323-42fd-ade2-1d097af3e4de"


def _seed(**extra: object) -> dict:
    seed = load_tenant(DEMO).dump()
    seed.update(extra)
    return seed


def test_assignments_of_the_app_filtered_and_expanded() -> None:
    seed = _seed(servicePrincipal={"id": "11111111-2222-3333-4444-555555555555",
                                   "appId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                                   "displayName": "responder",
                                   "directoryRoles": ["Exchange Administrator",
                                                      "User Administrator"]})
    with EmulatorServer(seed, token="t") as srv, httpx.Client(
            base_url=srv.base_url, headers={"Authorization": "Bearer t"}) as c:
        r = c.get(ASSIGNMENTS, params={
            "$filter": "principalId eq '11111111-2222-3333-4444-555555555555'",
            "$expand": "roleDefinition"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["@odata.context"].endswith("#roleManagement/directory/roleAssignments")
        rows = body["value"]
        assert {row["roleDefinition"]["displayName"] for row in rows} == {
            "Exchange Administrator", "User Administrator"}
        for row in rows:  # documented shape: built-in roleDefinitionId = template id
            assert row["principalId"] == "11111111-2222-3333-4444-555555555555"
            assert row["directoryScopeId"] == "/"
            assert row["roleDefinitionId"] == row["roleDefinition"]["templateId"]
        assert EXCHANGE_ADMIN in {row["roleDefinitionId"] for row in rows}
        # without $expand there is no roleDefinition object
        plain = c.get(ASSIGNMENTS, params={
            "$filter": "principalId eq '11111111-2222-3333-4444-555555555555'"}).json()
        assert all("roleDefinition" not in row for row in plain["value"])
        # role definitions and the service principal by appId
        defs = c.get("/v1.0/roleManagement/directory/roleDefinitions",
                     params={"$filter": "displayName eq 'Exchange Administrator'"}).json()
        assert [d["id"] for d in defs["value"]] == [EXCHANGE_ADMIN]
        sps = c.get("/v1.0/servicePrincipals",
                    params={"$filter": "appId eq 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'"}).json()
        assert [s["id"] for s in sps["value"]] == ["11111111-2222-3333-4444-555555555555"]


def test_an_issued_tokens_directory_roles_are_its_assignments() -> None:
    with EmulatorServer(_seed(), token="t") as srv:
        token = srv.issue_token(["RoleManagement.Read.Directory"],
                                directory_roles=["User Administrator"])
        sp = srv.emulator.authority.service_principal(srv.tenant)
        with httpx.Client(base_url=srv.base_url,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            rows = c.get(ASSIGNMENTS, params={"$filter": f"principalId eq '{sp['id']}'",
                                              "$expand": "roleDefinition"}).json()["value"]
        assert [r["roleDefinition"]["displayName"] for r in rows] == ["User Administrator"]


def test_reading_role_assignments_needs_role_management_read() -> None:
    with EmulatorServer(_seed(), token="t") as srv:
        token = srv.issue_token(["User.Read.All"])
        with httpx.Client(base_url=srv.base_url,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.get(ASSIGNMENTS)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "Authorization_RequestDenied"


def test_unknown_expand_is_a_bad_request(server: EmulatorServer,
                                         client: httpx.Client) -> None:
    r = client.get(ASSIGNMENTS, params={"$expand": "nonsense"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BadRequest"
