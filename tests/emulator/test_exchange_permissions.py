"""Delegation, mobile devices, client protocols and the audit log query, over HTTP."""

from __future__ import annotations

import time

import httpx

from devtools.emulator import EmulatorServer, load_tenant, make_tenant

from .conftest import AUTH, DEMO, TENANT_ID, invoke

GUEST_UPN = "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"


def _rows(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_mailbox_permissions_show_self_system_and_the_seeded_delegates(client):
    rows = _rows(invoke(client, "Get-MailboxPermission", {"Identity": "megan@contoso.com"}))
    by_user = {(r["User"], r["Deny"]): r for r in rows}
    assert by_user[("NT AUTHORITY\\SELF", False)]["IsInherited"] is False
    assert by_user[("NT AUTHORITY\\SYSTEM", False)]["IsInherited"] is True
    assert by_user[("Organization Management", True)]["AccessRights"] == ["FullAccess"]
    assert by_user[("diego@contoso.com", False)]["AccessRights"] == ["FullAccess"]
    assert {"Identity", "User", "AccessRights", "IsInherited", "Deny"} <= set(rows[0])
    # -Identity is required; -User filters the one mailbox
    assert invoke(client, "Get-MailboxPermission", {"User": "diego"}).status_code == 400
    only = _rows(invoke(client, "Get-MailboxPermission", {"Identity": "megan",
                                                          "User": "Diego Siciliani"}))
    assert [r["User"] for r in only] == ["diego@contoso.com"]


def test_add_and_remove_full_access_write_audit_records(client, server):
    r = invoke(client, "Add-MailboxPermission", {"Identity": "megan", "User": GUEST_UPN,
                                                 "AccessRights": ["FullAccess"]})
    assert _rows(r)[0]["User"] == GUEST_UPN
    assert invoke(client, "Add-MailboxPermission", {"Identity": "megan", "User": "nobody",
                                                    "AccessRights": "FullAccess"}
                  ).status_code == 404
    assert invoke(client, "Add-MailboxPermission", {"Identity": "megan", "User": GUEST_UPN,
                                                    "AccessRights": "Everything"}
                  ).status_code == 400
    ops = [a["operation"] for a in server.tenant.exchange_audit]
    assert ops[-1] == "Add-MailboxPermission"
    r = invoke(client, "Remove-MailboxPermission", {"Identity": "megan", "User": GUEST_UPN,
                                                    "AccessRights": ["FullAccess"],
                                                    "InheritanceType": "All",
                                                    "Confirm": False})
    assert r.status_code == 200 and r.json()["@adminapi.warnings"] == []
    users = [x["User"] for x in _rows(invoke(client, "Get-MailboxPermission",
                                             {"Identity": "megan"}))]
    assert GUEST_UPN not in users
    # removing what is not there: a warning, no change
    r = invoke(client, "Remove-MailboxPermission", {"Identity": "megan", "User": GUEST_UPN,
                                                    "AccessRights": "FullAccess"})
    assert r.json()["@adminapi.warnings"]


def test_send_as_by_identity_and_by_trustee(client):
    invoke(client, "Add-RecipientPermission", {"Identity": "megan", "Trustee": "adele",
                                               "AccessRights": ["SendAs"], "Confirm": False})
    invoke(client, "Add-RecipientPermission", {"Identity": "pradeep", "Trustee": "adele",
                                               "AccessRights": "SendAs"})
    on_megan = _rows(invoke(client, "Get-RecipientPermission", {"Identity": "megan"}))
    assert [(r["Trustee"], r["AccessRights"], r["IsInherited"]) for r in on_megan] == [
        ("adele@contoso.com", ["SendAs"], False)]
    held = _rows(invoke(client, "Get-RecipientPermission", {"Trustee": "adele@contoso.com"}))
    assert sorted(r["Identity"] for r in held) == ["megan", "pradeep"]
    assert invoke(client, "Add-RecipientPermission", {"Identity": "megan", "Trustee": "adele",
                                                      "AccessRights": "FullAccess"}
                  ).status_code == 400
    invoke(client, "Remove-RecipientPermission", {"Identity": "megan", "Trustee": "adele",
                                                  "AccessRights": "SendAs"})
    assert _rows(invoke(client, "Get-RecipientPermission", {"Identity": "megan"})) == []


def test_send_on_behalf_add_remove_hashtable(client):
    def delegates() -> list[str]:
        box = _rows(invoke(client, "Get-Mailbox", {"Identity": "megan"}))[0]
        return box["GrantSendOnBehalfTo"]

    assert delegates() == []
    invoke(client, "Set-Mailbox", {"Identity": "megan",
                                   "GrantSendOnBehalfTo": {"Add": ["pradeep@contoso.com",
                                                                   "adele"]}})
    assert delegates() == ["pradeep", "adele"]
    invoke(client, "Set-Mailbox", {"Identity": "megan",
                                   "GrantSendOnBehalfTo": {"Remove": ["Pradeep Gupta"]}})
    assert delegates() == ["adele"]
    rec = _rows(invoke(client, "Get-Recipient", {"Identity": GUEST_UPN}))[0]
    assert rec["RecipientTypeDetails"] == "GuestMailUser"
    assert rec["PrimarySmtpAddress"] == "alex@fabrikam.com"


def test_mobile_devices_block_list_and_wipe(client, server):
    devices = _rows(invoke(client, "Get-MobileDevice", {"Mailbox": "megan@contoso.com"}))
    assert {d["DeviceId"] for d in devices} == {"APPLC39XK2L1N72Q", "SEC1A9F7D03B2E6C"}
    new = next(d for d in devices if d["DeviceId"] == "SEC1A9F7D03B2E6C")
    assert new["FirstSyncTime"].startswith("2026-11-25T03:27:31")
    assert new["DeviceAccessState"] == "Allowed" and new["ClientType"] == "EAS"
    r = invoke(client, "Set-CASMailbox", {"Identity": "megan", "ActiveSyncBlockedDeviceIDs":
                                          {"Add": ["SEC1A9F7D03B2E6C"]}})
    assert r.status_code == 200
    cas = _rows(invoke(client, "Get-CASMailbox", {"Identity": "megan"}))[0]
    assert cas["ActiveSyncBlockedDeviceIDs"] == ["SEC1A9F7D03B2E6C"]
    states = {d["DeviceId"]: (d["DeviceAccessState"], d["DeviceAccessStateReason"]) for d in
              _rows(invoke(client, "Get-MobileDevice", {"Mailbox": "megan"}))}
    assert states == {"SEC1A9F7D03B2E6C": ("Blocked", "Individual"),
                      "APPLC39XK2L1N72Q": ("Allowed", "Global")}
    invoke(client, "Set-CASMailbox", {"Identity": "megan", "ActiveSyncBlockedDeviceIDs":
                                      {"Remove": ["SEC1A9F7D03B2E6C"]}})
    cas = _rows(invoke(client, "Get-CASMailbox", {"Identity": "megan"}))[0]
    assert cas["ActiveSyncBlockedDeviceIDs"] == []
    r = invoke(client, "Clear-MobileDevice", {"Identity": new["Identity"], "AccountOnly": True,
                                              "Confirm": False})
    assert r.status_code == 200
    megan = server.tenant.find_user("megan@contoso.com")
    wiped = next(d for d in megan["mailbox"]["mobileDevices"]
                 if d["deviceId"] == "SEC1A9F7D03B2E6C")
    assert [w["kind"] for w in wiped["wipeRequests"]] == ["accountOnly"]
    assert invoke(client, "Clear-MobileDevice", {"Identity": "nope"}).status_code == 404


def test_cas_protocol_flags_set_and_validated(client):
    cas = _rows(invoke(client, "Get-CASMailbox", {"Identity": "megan"}))[0]
    assert all(cas[f] is True for f in ("ImapEnabled", "PopEnabled", "EwsEnabled",
                                        "ActiveSyncEnabled", "MAPIEnabled", "OWAEnabled"))
    r = invoke(client, "Set-CASMailbox", {"Identity": "megan", "ImapEnabled": False,
                                          "PopEnabled": "$false"})
    assert r.status_code == 200
    cas = _rows(invoke(client, "Get-CASMailbox", {"Identity": "megan"}))[0]
    assert (cas["ImapEnabled"], cas["PopEnabled"], cas["OWAEnabled"]) == (False, False, True)
    assert invoke(client, "Set-CASMailbox", {"Identity": "megan", "ImapEnabled": "maybe"}
                  ).status_code == 400
    assert invoke(client, "Set-CASMailbox", {"Identity": "megan", "SmtpEnabled": False}
                  ).status_code == 400


def _query(client: httpx.Client, body: dict) -> str:
    r = client.post("/v1.0/security/auditLog/queries", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "notStarted"
    return r.json()["id"]


def test_audit_log_query_finds_the_dated_grants(client):
    qid = _query(client, {"filterStartDateTime": "2026-11-18T00:00:00Z",
                          "filterEndDateTime": "2030-01-01T00:00:00Z",
                          "recordTypeFilters": ["exchangeAdmin"],
                          "operationFilters": ["Add-MailboxPermission"]})
    assert client.get(f"/v1.0/security/auditLog/queries/{qid}").json()["status"] == "succeeded"
    recs = client.get(f"/v1.0/security/auditLog/queries/{qid}/records").json()["value"]
    users = [{p["Name"]: p["Value"] for p in r["auditData"]["Parameters"]}["User"]
             for r in recs]
    assert users == ["diego@contoso.com"]  # the June grant to Pradeep is before the range
    assert recs[0]["createdDateTime"].startswith("2026-11-25T03:24:10")
    assert recs[0]["operation"] == "Add-MailboxPermission" and recs[0]["objectId"] == "megan"
    r = client.get("/v1.0/security/auditLog/queries/unknown")
    assert r.status_code == 404


def test_audit_log_query_runs_for_a_while_and_pages():
    seed = make_tenant(30, offenders={"external_delegates": 5}, seed=2)
    with EmulatorServer(seed) as srv, httpx.Client(base_url=srv.base_url, headers=AUTH,
                                                   timeout=10) as c:
        srv.configure(audit_query_seconds=0.3, page_sizes={"auditLogRecords": 2})
        qid = _query(c, {"operationFilters": ["Add-MailboxPermission"]})
        assert c.get(f"/v1.0/security/auditLog/queries/{qid}").json()["status"] == "running"
        assert c.get(f"/v1.0/security/auditLog/queries/{qid}/records").json()["value"] == []
        time.sleep(0.35)
        assert c.get(f"/v1.0/security/auditLog/queries/{qid}").json()["status"] == "succeeded"
        url, got = f"/v1.0/security/auditLog/queries/{qid}/records", []
        while url:
            page = c.get(url).json()
            got += page["value"]
            url = page.get("@odata.nextLink")
        assert len(got) == 5


def test_rights_each_call_needs():
    with EmulatorServer(load_tenant(DEMO)) as srv, httpx.Client(base_url=srv.base_url,
                                                                timeout=10) as c:
        def call(token: str, cmdlet: str) -> int:
            body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": {"Identity": "megan"}}}
            return c.post(f"/adminapi/beta/{TENANT_ID}/InvokeCommand", json=body,
                          headers={"Authorization": f"Bearer {token}"}).status_code

        recipient_admin = srv.issue_token(["Exchange.ManageAsApp"], audience="exchange",
                                          directory_roles=["Exchange Recipient Administrator"])
        assert call(recipient_admin, "Get-MailboxPermission") == 200
        assert call(recipient_admin, "Get-CASMailbox") == 200
        # outside the Mail Recipients role: the organisation's audit switch
        assert call(recipient_admin, "Get-OrganizationConfig") == 401
        nobody = srv.issue_token(["Exchange.ManageAsApp"], audience="exchange",
                                 directory_roles=[])
        assert call(nobody, "Get-MobileDevice") == 401

        def query(roles: list[str]) -> int:
            token = srv.issue_token(roles)
            return c.post("/v1.0/security/auditLog/queries", json={},
                          headers={"Authorization": f"Bearer {token}"}).status_code

        assert query(["AuditLogsQuery-Exchange.Read.All"]) == 201
        assert query(["AuditLogsQuery.Read.All"]) == 201
        assert query(["AuditLog.Read.All"]) == 403
