"""App consents and directory role writes over HTTP: delegated permission grants, users' app
role assignments, the service principals behind them, the consent events in the directory
audit log, role assignment removal and restore, PIM eligibility, and the permission each
call needs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.emulator import EmulatorServer, load_tenant
from devtools.emulator.generate import ATTACKER_APP, make_tenant
from tests.emulator.conftest import DEMO, MEGAN

MALICIOUS_SP = "e1d2c3b4-a596-4877-8a69-5b4c3d2e1f00"
MALICIOUS_APP_ID = "4a8f3c21-7d6e-4b59-9c08-1e2d3f4a5b6c"
BENIGN_SP = "f2e3d4c5-b6a7-4988-9b7a-6c5d4e3f2a11"
ADELE = "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"
USER_ADMIN = "fe930be7-5e62-47db-91af-98c3a49a38b1"
SECURITY_ADMIN = "194ae4cb-b126-40b2-bd5b-6091b380977d"
FINANCE = "7b2eac50-4d9f-4e63-9077-2c3d4e5f6071"


@pytest.fixture
def srv() -> Iterator[EmulatorServer]:
    seed = load_tenant(DEMO).dump()
    seed["roleEligibilities"] = [{"principalId": ADELE, "roleDefinitionId":
                                  "Security Administrator"}]
    with EmulatorServer(seed, seed=5) as server:
        yield server


def client(srv: EmulatorServer, *perms: str) -> httpx.Client:
    token = srv.issue_token(perms)
    return httpx.Client(base_url=srv.base_url, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def test_grants_list_filter_delete_and_recreate(srv: EmulatorServer) -> None:
    with client(srv, "Directory.Read.All") as read:
        r = read.get("/v1.0/oauth2PermissionGrants",
                     params={"$filter": f"principalId eq '{MEGAN}'"})
        assert r.status_code == 200, r.text
        grants = r.json()["value"]
        assert {g["clientId"] for g in grants} == {MALICIOUS_SP, BENIGN_SP}
        assert all(g["consentType"] == "Principal" for g in grants)
        bad = next(g for g in grants if g["clientId"] == MALICIOUS_SP)
        assert bad["scope"] == "Mail.ReadWrite Mail.Send offline_access"
        assert set(bad) == {"id", "clientId", "consentType", "principalId", "resourceId",
                            "scope"}
        by_client = read.get("/v1.0/oauth2PermissionGrants",
                             params={"$filter": f"clientId eq '{MALICIOUS_SP}'"}).json()
        assert [g["id"] for g in by_client["value"]] == [bad["id"]]
        assert read.get(f"/v1.0/oauth2PermissionGrants/{bad['id']}").json()["scope"] == \
            bad["scope"]
        # reading is not enough to delete
        assert read.delete(f"/v1.0/oauth2PermissionGrants/{bad['id']}").status_code == 403
        # the per-user list is not supported with application permissions
        assert read.get(f"/v1.0/users/{MEGAN}/oauth2PermissionGrants").status_code == 403
    with client(srv, "DelegatedPermissionGrant.ReadWrite.All") as write:
        assert write.delete(f"/v1.0/oauth2PermissionGrants/{bad['id']}").status_code == 204
        assert write.get(f"/v1.0/oauth2PermissionGrants/{bad['id']}").status_code == 404
        assert write.delete(f"/v1.0/oauth2PermissionGrants/{bad['id']}").status_code == 404
        body = {k: bad[k] for k in ("clientId", "consentType", "principalId", "resourceId",
                                    "scope")}
        created = write.post("/v1.0/oauth2PermissionGrants", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["scope"] == bad["scope"]
        again = write.post("/v1.0/oauth2PermissionGrants", json=body)
        assert again.status_code == 409
        unknown = write.post("/v1.0/oauth2PermissionGrants",
                             json={**body, "clientId": "00000000-1111-2222-3333-444444444444"})
        assert unknown.status_code == 400
    log = [e for e in srv.requests() if e["method"] == "DELETE"]
    assert log[0]["authz"]["needs"] == [[["DelegatedPermissionGrant.ReadWrite.All"],
                                         ["Directory.ReadWrite.All"]]]


def test_user_app_role_assignments_include_groups_and_need_their_permission(
        srv: EmulatorServer) -> None:
    seed = srv.state()
    seed["appRoleAssignments"].append({"principalId": FINANCE, "resourceId": BENIGN_SP,
                                       "createdDateTime": "2026-01-05T10:00:00Z"})
    srv.load_tenant(seed)
    with client(srv, "Directory.Read.All") as read:
        rows = read.get(f"/v1.0/users/{MEGAN}/appRoleAssignments").json()["value"]
        mine = [a for a in rows if a["principalId"] == MEGAN]
        assert {a["resourceId"] for a in mine} == {MALICIOUS_SP, BENIGN_SP}
        assert any(a["principalId"] == FINANCE and a["principalType"] == "Group" for a in rows)
        bad = next(a for a in mine if a["resourceId"] == MALICIOUS_SP)
        assert bad["createdDateTime"].startswith("2026-11-25T03:21:09")
        assert bad["resourceDisplayName"] == "Invoice Viewer Pro"
        assert read.delete(f"/v1.0/users/{MEGAN}/appRoleAssignments/{bad['id']}") \
            .status_code == 403
    with client(srv, "AppRoleAssignment.ReadWrite.All") as write:
        path = f"/v1.0/users/{MEGAN}/appRoleAssignments"
        assert write.delete(f"{path}/{bad['id']}").status_code == 204
        assert write.delete(f"{path}/{bad['id']}").status_code == 404
        body = {"principalId": MEGAN, "resourceId": MALICIOUS_SP,
                "appRoleId": bad["appRoleId"]}
        created = write.post(path, json=body)
        assert created.status_code == 201 and created.json()["createdDateTime"]
        assert write.post(path, json=body).status_code == 400  # already assigned
        assert write.post(path, json={**body, "principalId": ADELE}).status_code == 400


def test_service_principals_resolve_client_ids(srv: EmulatorServer) -> None:
    with client(srv, "Application.Read.All") as c:
        sp = c.get(f"/v1.0/servicePrincipals/{MALICIOUS_SP}").json()
        assert sp["appId"] == MALICIOUS_APP_ID and sp["displayName"] == "Invoice Viewer Pro"
        found = c.get("/v1.0/servicePrincipals",
                      params={"$filter": f"appId eq '{MALICIOUS_APP_ID}'"}).json()["value"]
        assert [s["id"] for s in found] == [MALICIOUS_SP]
        assert c.get("/v1.0/servicePrincipals/00000000-1111-2222-3333-444444444444") \
            .status_code == 404


def test_consent_events_have_the_documented_names_and_shapes(srv: EmulatorServer) -> None:
    with client(srv, "AuditLog.Read.All", "Directory.Read.All") as c:
        r = c.get("/v1.0/auditLogs/directoryAudits", params={
            "$filter": "activityDateTime ge 2026-11-20T00:00:00Z and "
                       "activityDisplayName eq 'Consent to application'"})
        assert r.status_code == 200, r.text
        events = r.json()["value"]
        assert len(events) == 1
        ev = events[0]
        assert ev["category"] == "ApplicationManagement"
        assert ev["loggedByService"] == "Core Directory"
        assert ev["initiatedBy"]["user"]["id"] == MEGAN
        assert ev["targetResources"][0]["id"] == MALICIOUS_SP
        assert ev["targetResources"][0]["type"] == "ServicePrincipal"
        names = {p["displayName"] for p in ev["targetResources"][0]["modifiedProperties"]}
        assert {"ConsentContext.IsAdminConsent", "ConsentAction.Permissions"} <= names
        assigned = c.get("/v1.0/auditLogs/directoryAudits", params={
            "$filter": "activityDisplayName eq 'Add app role assignment grant to user'"}) \
            .json()["value"]
        assert {e["targetResources"][1]["id"] for e in assigned} == {MEGAN}
        assert {e["category"] for e in assigned} == {"UserManagement"}


def test_role_assignments_removed_and_restored_with_the_write_permission(
        srv: EmulatorServer) -> None:
    path = "/v1.0/roleManagement/directory/roleAssignments"
    with client(srv, "RoleManagement.Read.Directory") as read:
        rows = read.get(path, params={"$filter": f"principalId eq '{ADELE}'",
                                      "$expand": "roleDefinition"}).json()["value"]
        assert [(r["roleDefinition"]["displayName"], r["directoryScopeId"]) for r in rows] \
            == [("User Administrator", "/")]
        assert read.delete(f"{path}/{rows[0]['id']}").status_code == 403
        eligible = read.get("/v1.0/roleManagement/directory/roleEligibilityScheduleInstances",
                            params={"$filter": f"principalId eq '{ADELE}'",
                                    "$expand": "roleDefinition"})
        assert eligible.status_code == 200, eligible.text
        assert [(e["roleDefinitionId"], e["roleDefinition"]["displayName"])
                for e in eligible.json()["value"]] == [(SECURITY_ADMIN,
                                                        "Security Administrator")]
    with client(srv, "RoleManagement.ReadWrite.Directory") as write:
        assert write.delete(f"{path}/{rows[0]['id']}").status_code == 204
        assert write.delete(f"{path}/{rows[0]['id']}").status_code == 404
        assert ADELE not in [u["id"] for u in srv.state()["users"]
                             if USER_ADMIN in u["directoryRoles"]]
        body = {"@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                "principalId": ADELE, "roleDefinitionId": USER_ADMIN, "directoryScopeId": "/"}
        created = write.post(path, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["roleDefinitionId"] == USER_ADMIN
        assert write.post(path, json=body).status_code == 400  # already assigned
    adele = next(u for u in srv.state()["users"] if u["id"] == ADELE)
    assert USER_ADMIN in adele["directoryRoles"]


def test_eligibility_without_a_pim_licence_is_refused(srv: EmulatorServer) -> None:
    seed = srv.state()
    seed["licences"] = {**seed["licences"], "privilegedIdentityManagement": False}
    srv.load_tenant(seed)
    with client(srv, "RoleManagement.Read.Directory") as c:
        r = c.get("/v1.0/roleManagement/directory/roleEligibilityScheduleInstances")
        assert r.status_code == 400 and r.json()["error"]["code"] == "AadPremiumLicenseRequired"


def test_generator_gives_offenders_a_malicious_consent_in_the_window() -> None:
    seed = make_tenant(20, offenders={"malicious_consents": 2}, seed=4)
    offenders = seed["offenders"]["malicious_consents"]
    assert len(offenders) == 2
    tenant = load_tenant(seed)
    sp = next(s for s in tenant.service_principals.values()
              if s["appId"] == ATTACKER_APP["appId"])
    owners = {tenant.users[g["principalId"]]["userPrincipalName"]
              for g in tenant.oauth2_grants.values() if g["clientId"] == sp["id"]}
    assert owners == set(offenders)
    consents = [e for e in tenant.visible_audit_events()
                if e["activityDisplayName"] == "Consent to application"]
    assert len(consents) == 2 and all(e["activityDateTime"].startswith("2026-11-25T11:00")
                                      for e in consents)
    # without the option nothing changes
    assert make_tenant(20, seed=4)["servicePrincipals"] == []
