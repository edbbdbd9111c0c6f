"""Exchange admin REST InvokeCommand: cmdlets, -Filter, paging, errors, shared rule store."""

from __future__ import annotations

import httpx

from devtools.emulator import EmulatorServer, make_tenant

from .conftest import AUTH, MEGAN, TENANT_ID, invoke


def test_get_mailbox_by_identity_forms(client):
    for ident in ("megan@contoso.com", "megan", MEGAN, "Megan Bowen"):
        r = invoke(client, "Get-Mailbox", {"Identity": ident},
                   headers={"X-AnchorMailbox": "UPN:megan@contoso.com"})
        assert r.status_code == 200, r.text
        mbx = r.json()["value"][0]
        assert mbx["ExternalDirectoryObjectId"] == MEGAN
        assert mbx["AuditEnabled"] is False
        assert mbx["ForwardingSmtpAddress"] == "smtp:megan.bowen.mail@gmail.example"
    body = r.json()
    assert "@adminapi.warnings" in body and "@odata.context" in body


def test_not_found_message_in_both_places(client):
    r = invoke(client, "Get-Mailbox", {"Identity": "ghost@contoso.com"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert "couldn't be found" in err["details"][0]["message"]
    assert "couldn't be found" in err["innererror"]["internalException"]["message"]
    assert invoke(client, "Get-Mailbox", {"Identity": "alex_fabrikam.com#EXT#@contoso"
                                          ".onmicrosoft.com"}).status_code == 404


def test_unknown_cmdlet_bad_param_bad_body_bad_tenant(client):
    r = invoke(client, "Remove-Mailbox", {"Identity": "megan"})
    assert r.status_code == 400 and "not recognized" in r.json()["error"]["details"][0]["message"]
    r = invoke(client, "Set-Mailbox", {"Identity": "megan", "Colour": "red"})
    assert r.status_code == 400 and "Colour" in r.json()["error"]["details"][0]["message"]
    r = client.post(f"/adminapi/beta/{TENANT_ID}/InvokeCommand", json={"nope": 1})
    assert r.status_code == 400
    r = invoke(client, "Get-Mailbox", url="/adminapi/beta/other-tenant/InvokeCommand")
    assert r.status_code == 404
    r = invoke(client, "Get-Mailbox", url="/adminapi/beta/contoso.com/InvokeCommand")
    assert r.status_code == 200


def test_filter_paging_with_prefer_maxpagesize():
    seed = make_tenant(40, offenders={"audit_disabled": 5, "forwarding": 3}, seed=5)
    with EmulatorServer(seed) as srv, httpx.Client(headers=AUTH, timeout=10) as c:
        url = f"{srv.base_url}/adminapi/beta/{seed['tenantId']}/InvokeCommand"
        body = {"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {
            "Filter": "AuditEnabled -eq $false", "ResultSize": "Unlimited"}}}
        got, pages = [], 0
        while url:
            r = c.post(url, json=body, headers={"Prefer": "odata.maxpagesize=2"})
            assert r.status_code == 200
            pages += 1
            got += [m["UserPrincipalName"] for m in r.json()["value"]]
            url = r.json().get("@odata.nextLink")
        assert pages == 3
        assert sorted(got) == sorted(seed["offenders"]["audit_disabled"])
        body["CmdletInput"]["Parameters"]["Filter"] = "ForwardingSmtpAddress -ne $null"
        r = c.post(f"{srv.base_url}/adminapi/beta/{seed['tenantId']}/InvokeCommand", json=body)
        assert sorted(m["UserPrincipalName"] for m in r.json()["value"]) == sorted(
            seed["offenders"]["forwarding"])
        body["CmdletInput"]["Parameters"] = {"ResultSize": 10}
        r = c.post(f"{srv.base_url}/adminapi/beta/{seed['tenantId']}/InvokeCommand", json=body)
        assert len(r.json()["value"]) == 10
        body["CmdletInput"]["Parameters"] = {"Filter": "AuditEnabled -eq"}
        r = c.post(f"{srv.base_url}/adminapi/beta/{seed['tenantId']}/InvokeCommand", json=body)
        assert r.status_code == 400


def test_set_mailbox_audit_and_forwarding(server, client):
    r = invoke(client, "Set-Mailbox", {"Identity": "megan@contoso.com", "AuditEnabled": True,
                                       "ForwardingSmtpAddress": None, "ForwardingAddress": None,
                                       "DeliverToMailboxAndForward": False})
    assert r.status_code == 200 and r.json()["value"] == []
    mbx = invoke(client, "Get-Mailbox", {"Identity": "megan"}).json()["value"][0]
    assert mbx["AuditEnabled"] is True and mbx["ForwardingSmtpAddress"] is None
    assert server.requests()[0]["write"] is True and server.requests()[0]["cmdlet"] == \
        "Set-Mailbox"
    assert server.requests()[0]["params"]["AuditEnabled"] is True
    r = invoke(client, "Set-Mailbox", {"Identity": "megan", "AuditEnabled": "$true"})
    assert r.json()["@adminapi.warnings"]  # nothing changed


def test_org_config_and_bypass(server, client):
    assert invoke(client, "Get-OrganizationConfig").json()["value"][0]["AuditDisabled"] is False
    invoke(client, "Set-OrganizationConfig", {"AuditDisabled": True})
    assert server.state()["organization"]["auditDisabled"] is True
    invoke(client, "Set-MailboxAuditBypassAssociation", {"Identity": "diego@contoso.com",
                                                         "AuditBypassEnabled": True})
    r = invoke(client, "Get-MailboxAuditBypassAssociation",
               {"Filter": "AuditBypassEnabled -eq $true"})
    assert [x["Identity"] for x in r.json()["value"]] == ["diego"]
    r = invoke(client, "Get-MailboxAuditBypassAssociation", {"Identity": "megan"})
    assert r.json()["value"][0]["AuditBypassEnabled"] is False


def test_blocked_senders(server, client):
    items = invoke(client, "Get-BlockedSenderAddress").json()["value"]
    assert items[0]["SenderAddress"] == "megan@contoso.com" and items[0]["CreatedDatetime"]
    assert invoke(client, "Get-BlockedSenderAddress", {"SenderAddress": "x@contoso.com"}).json()[
        "value"] == []
    assert invoke(client, "Remove-BlockedSenderAddress",
                  {"SenderAddress": "Megan@contoso.com"}).status_code == 200
    assert server.state()["blockedSenders"] == []
    assert invoke(client, "Remove-BlockedSenderAddress",
                  {"SenderAddress": "megan@contoso.com"}).status_code == 404


def test_hidden_rules_and_shared_store(client):
    plain = invoke(client, "Get-InboxRule", {"Mailbox": "megan@contoso.com"}).json()["value"]
    hidden = invoke(client, "Get-InboxRule", {"Mailbox": "megan@contoso.com",
                                              "IncludeHidden": True}).json()["value"]
    assert len(plain) == 4 and len(hidden) == 5
    secret = next(r for r in hidden if r["Name"] == "")
    assert secret["RedirectTo"] and "ap.remittance@gmail.example" in secret["RedirectTo"][0]
    fwd = next(r for r in plain if r["ForwardTo"])
    assert fwd["SubjectContainsWords"] == ["invoice", "payment", "wire"]
    assert "forward the message" in fwd["Description"]
    r = invoke(client, "Disable-InboxRule", {"Mailbox": "megan@contoso.com",
                                             "Identity": fwd["RuleIdentity"]})
    assert r.status_code == 200
    rules = client.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules").json()["value"]
    assert next(x for x in rules if x["displayName"] == "..")["isEnabled"] is False
    # and the other way round: Graph PATCH shows in Exchange
    benign = next(x for x in rules if x["displayName"] == "Newsletters")
    client.patch(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules/{benign['id']}",
                 json={"isEnabled": False})
    again = invoke(client, "Get-InboxRule", {"Mailbox": "megan"}).json()["value"]
    assert next(x for x in again if x["Name"] == "Newsletters")["Enabled"] is False
    r = invoke(client, "Disable-InboxRule", {"Identity": secret["Identity"]})
    assert r.status_code == 200
    assert invoke(client, "Enable-InboxRule", {"Mailbox": "megan", "Identity": "nope"}
                  ).status_code == 404


def test_compromised_user_report(client):
    r = invoke(client, "Get-CompromisedUserDetailReport", {"Action": "Restricted,Suspicious"})
    assert {x["UserPrincipalName"] for x in r.json()["value"]} == {"megan@contoso.com",
                                                                   "diego@contoso.com"}
    r = invoke(client, "Get-CompromisedUserDetailReport", {"Action": ["Restricted"]})
    assert [x["UserPrincipalName"] for x in r.json()["value"]] == ["megan@contoso.com"]
