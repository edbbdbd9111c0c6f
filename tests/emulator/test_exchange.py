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


def test_blocked_sender_releases_are_limited_per_account(server, client):
    """Exchange limits releases per account (number undocumented: configurable here); past
    the limit the cmdlet errors and the sender stays blocked."""
    server.configure(blocked_sender_release_limit=2)
    for _ in range(2):
        server.tenant.block_sender("megan@contoso.com")
        assert invoke(client, "Remove-BlockedSenderAddress",
                      {"SenderAddress": "megan@contoso.com"}).status_code == 200
    server.tenant.block_sender("megan@contoso.com")
    r = invoke(client, "Remove-BlockedSenderAddress", {"SenderAddress": "megan@contoso.com"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] and "support" in err["details"][0]["message"]
    assert [b["SenderAddress"] for b in server.state()["blockedSenders"]] == \
        ["megan@contoso.com"]
    assert server.tenant.release_count("MEGAN@contoso.com") == 2
    # another account has its own count; no limit at all when configured None
    server.tenant.block_sender("pradeep@contoso.com")
    assert invoke(client, "Remove-BlockedSenderAddress",
                  {"SenderAddress": "pradeep@contoso.com"}).status_code == 200
    server.configure(blocked_sender_release_limit=None)
    assert invoke(client, "Remove-BlockedSenderAddress",
                  {"SenderAddress": "megan@contoso.com"}).status_code == 200


def test_a_reblocked_sender_has_a_new_created_time(server, client):
    first = invoke(client, "Get-BlockedSenderAddress").json()["value"][0]
    invoke(client, "Remove-BlockedSenderAddress", {"SenderAddress": "megan@contoso.com"})
    server.tenant.block_sender("megan@contoso.com")
    again = invoke(client, "Get-BlockedSenderAddress").json()["value"][0]
    assert again["SenderAddress"] == "megan@contoso.com"
    assert again["CreatedDatetime"] != first["CreatedDatetime"]


def test_hidden_rules_and_shared_store(server, client):
    plain = invoke(client, "Get-InboxRule", {"Mailbox": "megan@contoso.com"}).json()["value"]
    hidden = invoke(client, "Get-InboxRule", {"Mailbox": "megan@contoso.com",
                                              "IncludeHidden": True}).json()["value"]
    assert len(plain) == 5 and len(hidden) == 7  # + the secret rule and the junk e-mail rule
    secret = next(r for r in hidden if r["Name"] == "")
    assert secret["RedirectTo"] and "ap.remittance@gmail.example" in secret["RedirectTo"][0]
    fwd = next(r for r in plain if r["ForwardTo"])
    assert fwd["SubjectContainsWords"] == ["invoice", "payment", "wire"]
    assert "forward the message" in fwd["Description"]
    r = invoke(client, "Disable-InboxRule", {"Mailbox": "megan@contoso.com",
                                             "Identity": fwd["RuleIdentity"], "Force": True})
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
    assert invoke(client, "Enable-InboxRule", {"Mailbox": "megan", "Identity": "nope",
                                               "Force": True}).status_code == 404


def test_rule_identity_is_the_graph_id_little_endian_and_identity_names_the_mailbox(client):
    """Identity is MailboxAlias\\RuleIdentity (Get-InboxRule docs); RuleIdentity is the Graph
    id's 8 bytes as a little-endian integer (the documented example ends in ...00000001)."""
    rows = invoke(client, "Get-InboxRule", {"Mailbox": "megan"}).json()["value"]
    graph = client.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules").json()["value"]
    for g in graph:
        row = next(r for r in rows if r["Name"] == g["displayName"])
        raw = __import__("base64").b64decode(g["id"].replace("-", "+").replace("_", "/"))
        assert row["RuleIdentity"] == str(int.from_bytes(raw, "little"))
        assert row["Identity"] == f"megan\\{row['RuleIdentity']}"
        assert int(row["RuleIdentity"]) & 0xFFFFFFFF == 1


def test_colleagues_show_as_ex_recipients_and_outsiders_as_smtp(client):
    rows = invoke(client, "Get-InboxRule", {"Mailbox": "megan", "IncludeHidden": True}
                  ).json()["value"]
    colleague = next(r for r in rows if r["Name"] == "Project Falcon to Adele")
    (to,) = colleague["ForwardTo"]
    assert to.startswith('"Adele Vance" [EX:/o=ExchangeLabs/ou=Exchange Administrative Group')
    assert "/cn=Recipients/cn=" in to and to.endswith("-adele]") and "SMTP:" not in to
    outsider = next(r for r in rows if r["Name"] == "..")
    assert outsider["ForwardTo"] == ['"AP Remittance" [SMTP:ap.remittance@gmail.example]']


def test_system_junk_rule_is_hidden_and_only_seen_with_include_hidden(client):
    plain = invoke(client, "Get-InboxRule", {"Mailbox": "adele"}).json()["value"]
    hidden = invoke(client, "Get-InboxRule", {"Mailbox": "adele", "IncludeHidden": True}
                    ).json()["value"]
    assert plain == []
    (junk,) = hidden
    assert junk["Name"] == "Junk E-mail Rule" and junk["Enabled"] is True
    assert junk["MoveToFolder"].endswith("Junk Email")
    graph = client.get("/v1.0/users/adele@contoso.com/mailFolders/inbox/messageRules").json()
    assert graph["value"] == []


def test_changing_a_rule_through_exchange_removes_outlook_client_rules(server, client):
    """Disable-/Enable-InboxRule remove Outlook's client-side rules and prompt first unless
    -Force or -AlwaysDeleteOutlookRulesBlob (Disable-InboxRule docs). A prompt through the
    REST endpoint cannot be answered: the emulator fails the call."""
    rows = invoke(client, "Get-InboxRule", {"Mailbox": "megan"}).json()["value"]
    fwd = next(r for r in rows if r["Name"] == "..")
    r = invoke(client, "Disable-InboxRule", {"Mailbox": "megan", "Identity": fwd["Identity"]})
    assert r.status_code == 400 and "does not support user interaction" in r.text
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)["mailbox"]
    assert megan["outlookClientRules"] == ["Play a sound for mail from Pradeep"]
    assert next(x for x in megan["rules"] if x["displayName"] == "..")["isEnabled"] is True
    r = invoke(client, "Disable-InboxRule", {"Mailbox": "megan", "Identity": fwd["Identity"],
                                             "AlwaysDeleteOutlookRulesBlob": True})
    assert r.status_code == 200
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)["mailbox"]
    assert megan["outlookClientRules"] == []
    assert megan["clientRulesRemoved"] == ["Play a sound for mail from Pradeep"]
    assert next(x for x in megan["rules"] if x["displayName"] == "..")["isEnabled"] is False
    # nothing left to remove: no prompt any more
    assert invoke(client, "Enable-InboxRule", {"Mailbox": "megan", "Identity": fwd["Identity"]}
                  ).status_code == 200


def test_exchange_only_predicates_make_a_read_only_empty_graph_rule(server, client):
    """A rule with predicates Graph does not support: Exchange shows everything, Graph shows
    it read-only with no conditions or actions, and refuses to change it."""
    seed = server.state()
    megan = next(u for u in seed["users"] if u["id"] == MEGAN)
    megan["mailbox"]["rules"].append({
        "id": "AQAAAJ5dZqU=", "displayName": "Quarterly", "sequence": 7,
        "exchangeOnly": {"ReceivedAfterDate": "2026-11-25T00:00:00"},
        "actions": {"forwardTo": ["drop@evil.example"]}})
    server.load_tenant(seed)
    base = f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules"
    g = client.get(f"{base}/AQAAAJ5dZqU=").json()
    assert g["isReadOnly"] is True
    assert "conditions" not in g and "actions" not in g and "exceptions" not in g
    r = client.patch(f"{base}/AQAAAJ5dZqU=", json={"isEnabled": False})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    assert client.get(f"{base}/AQAAAJ5dZqU=").json()["isEnabled"] is True
    row = next(r for r in invoke(client, "Get-InboxRule", {"Mailbox": "megan"}).json()["value"]
               if r["Name"] == "Quarterly")
    assert row["ReceivedAfterDate"] == "2026-11-25T00:00:00"
    assert row["ForwardTo"] == ['"drop@evil.example" [SMTP:drop@evil.example]']
    r = invoke(client, "Disable-InboxRule", {"Mailbox": "megan", "Identity": row["RuleIdentity"],
                                             "Force": True})
    assert r.status_code == 200
    assert client.get(f"{base}/AQAAAJ5dZqU=").json()["isEnabled"] is False


def test_compromised_user_report(client):
    r = invoke(client, "Get-CompromisedUserDetailReport", {"Action": "Restricted,Suspicious"})
    assert {x["UserPrincipalName"] for x in r.json()["value"]} == {"megan@contoso.com",
                                                                   "diego@contoso.com"}
    r = invoke(client, "Get-CompromisedUserDetailReport", {"Action": ["Restricted"]})
    assert [x["UserPrincipalName"] for x in r.json()["value"]] == ["megan@contoso.com"]


def test_mailbox_auditing_on_by_default_semantics(server, client):
    """Documented on-by-default model: AuditEnabled does not decide what is logged; the
    organisation switch, bypass and per-type audited actions do; customising a type drops
    it from DefaultAuditSet, -DefaultAuditSet restores it."""
    from devtools.emulator import mailbox_audit as ma

    mbx = invoke(client, "Get-Mailbox", {"Identity": "megan"}).json()["value"][0]
    assert mbx["AuditEnabled"] is False
    assert mbx["DefaultAuditSet"] == ["Admin", "Delegate", "Owner"]
    assert {"UpdateInboxRules", "SoftDelete", "HardDelete"} <= set(mbx["AuditOwner"])
    assert "MailItemsAccessed" not in mbx["AuditOwner"]  # no Audit (Premium) licence
    tenant = server.tenant
    org, megan = tenant.organization, tenant.find_user(MEGAN)["mailbox"]
    # AuditEnabled False, organisation on: the owner's rule changes are still logged...
    assert ma.is_logged(org, megan, megan, "Owner", "UpdateInboxRules")
    # ...but without Audit (Premium) they reach audit search only after AuditEnabled $true
    assert not ma.is_searchable(org, megan)

    r = invoke(client, "Set-Mailbox", {"Identity": "megan", "AuditOwner": {
        "Remove": ["UpdateInboxRules", "SoftDelete"]}})
    assert r.status_code == 200, r.text
    mbx = invoke(client, "Get-Mailbox", {"Identity": "megan"}).json()["value"][0]
    assert mbx["DefaultAuditSet"] == ["Admin", "Delegate"]
    assert "UpdateInboxRules" not in mbx["AuditOwner"] and "HardDelete" in mbx["AuditOwner"]
    assert not ma.is_logged(org, megan, megan, "Owner", "UpdateInboxRules")
    invoke(client, "Set-Mailbox", {"Identity": "megan", "AuditOwner": {"Add": ["MailboxLogin"]}})
    assert "MailboxLogin" in invoke(client, "Get-Mailbox", {"Identity": "megan"}).json()[
        "value"][0]["AuditOwner"]
    # an E5-only action on a mailbox without the licence, or an action of another type
    for bad in ({"AuditOwner": {"Add": ["MailItemsAccessed"]}}, {"AuditOwner": "SendAs"},
                {"DefaultAuditSet": "Everyone"}):
        r = invoke(client, "Set-Mailbox", {"Identity": "megan", **bad})
        assert r.status_code == 400, bad
    # replace, then restore the owner defaults only
    invoke(client, "Set-Mailbox", {"Identity": "megan", "AuditAdmin": "HardDelete,SoftDelete"})
    r = invoke(client, "Set-Mailbox", {"Identity": "megan", "DefaultAuditSet": ["Owner"]})
    assert r.status_code == 200
    mbx = invoke(client, "Get-Mailbox", {"Identity": "megan"}).json()["value"][0]
    assert mbx["DefaultAuditSet"] == ["Delegate", "Owner"]
    assert mbx["AuditAdmin"] == ["HardDelete", "SoftDelete"]
    assert "UpdateInboxRules" in mbx["AuditOwner"] and "MailboxLogin" not in mbx["AuditOwner"]

    # AuditEnabled $true: searchable (the documented workaround for non-E5 mailboxes)
    invoke(client, "Set-Mailbox", {"Identity": "megan", "AuditEnabled": True})
    assert ma.is_searchable(org, megan)
    # a bypass hides everything that user does, and the organisation switch trumps all
    invoke(client, "Set-MailboxAuditBypassAssociation", {"Identity": "megan",
                                                         "AuditBypassEnabled": True})
    assert not ma.is_logged(org, megan, megan, "Owner", "HardDelete")
    invoke(client, "Set-MailboxAuditBypassAssociation", {"Identity": "megan",
                                                         "AuditBypassEnabled": False})
    invoke(client, "Set-OrganizationConfig", {"AuditDisabled": True})
    assert not ma.is_logged(org, megan, megan, "Owner", "HardDelete")
    assert not ma.is_searchable(org, megan)


def test_premium_mailbox_defaults_include_e5_actions():
    seed = make_tenant(3, offenders={}, seed=2)
    box = next(u for u in seed["users"] if u.get("mailbox"))
    box["mailbox"]["auditPremium"] = True
    with EmulatorServer(seed) as srv, httpx.Client(headers=AUTH, timeout=10) as c:
        url = f"{srv.base_url}/adminapi/beta/{seed['tenantId']}/InvokeCommand"
        body = {"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {
            "Identity": box["userPrincipalName"]}}}
        mbx = c.post(url, json=body).json()["value"][0]
        assert {"MailItemsAccessed", "Send"} <= set(mbx["AuditOwner"])
        assert "Send" not in mbx["AuditDelegate"]  # not a delegate action
