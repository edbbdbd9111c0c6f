"""Authentication methods, per-user MFA, group membership, mail folders and rules."""

from __future__ import annotations

from .conftest import ATTACKER_APP, CA_GROUP, GUEST, MEGAN, OBRIEN

PASSWORD_ID = "28c10230-6103-485e-b985-444c60001490"


def test_methods_list_has_types_and_created_dates(client):
    methods = client.get(f"/v1.0/users/{MEGAN}/authentication/methods").json()["value"]
    types = [m["@odata.type"] for m in methods]
    assert "#microsoft.graph.passwordAuthenticationMethod" in types
    assert "#microsoft.graph.phoneAuthenticationMethod" in types
    assert types.count("#microsoft.graph.microsoftAuthenticatorAuthenticationMethod") == 2
    phones = [m for m in methods if m["@odata.type"].endswith("phoneAuthenticationMethod")]
    assert {p["phoneType"] for p in phones} == {"mobile", "alternateMobile"}
    assert all(p["createdDateTime"] is None for p in phones), "phones carry no date"
    attacker = next(m for m in methods if m["id"] == ATTACKER_APP)
    assert attacker["createdDateTime"] == "2026-11-25T03:20:00Z"
    assert next(m for m in methods if m["id"] == PASSWORD_ID)


def test_typed_delete(server, client):
    base = f"/v1.0/users/{MEGAN}/authentication"
    assert client.delete(f"{base}/phoneMethods/{ATTACKER_APP}").status_code == 404
    assert client.delete(f"{base}/passwordMethods/{PASSWORD_ID}").status_code == 400
    r = client.delete(f"{base}/microsoftAuthenticatorMethods/{ATTACKER_APP}")
    assert r.status_code == 204
    assert client.delete(f"{base}/microsoftAuthenticatorMethods/{ATTACKER_APP}").status_code \
        == 404
    ids = [m["id"] for m in client.get(f"{base}/methods").json()["value"]]
    assert ATTACKER_APP not in ids
    assert server.requests()[-3]["write"] is True


def test_temporary_access_pass(server, client):
    base = f"/v1.0/users/{MEGAN}/authentication/temporaryAccessPassMethods"
    r = client.post(base, json={"lifetimeInMinutes": 60, "isUsableOnce": True})
    assert r.status_code == 201
    tap = r.json()["temporaryAccessPass"]
    assert tap and tap not in str(server.state())
    assert client.post(base, json={"lifetimeInMinutes": 5}).status_code == 400


def test_per_user_mfa_is_beta_only(client):
    r = client.get(f"/beta/users/{MEGAN}/authentication/requirements")
    assert r.status_code == 200 and r.json()["perUserMfaState"] == "disabled"
    r = client.patch(f"/beta/users/{MEGAN}/authentication/requirements",
                     json={"perUserMfaState": "enforced"})
    assert r.status_code == 204
    assert client.get(f"/beta/users/{MEGAN}/authentication/requirements").json()[
        "perUserMfaState"] == "enforced"
    assert client.patch(f"/v1.0/users/{MEGAN}/authentication/requirements",
                        json={"perUserMfaState": "enforced"}).status_code == 400


def test_group_membership_add_remove(server, client):
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{MEGAN}"}
    assert client.post(f"/v1.0/groups/{CA_GROUP}/members/$ref", json=ref).status_code == 204
    r = client.post(f"/v1.0/groups/{CA_GROUP}/members/$ref", json=ref)
    assert r.status_code == 400
    assert "One or more added object references already exist" in r.json()["error"]["message"]
    members = client.get(f"/v1.0/groups/{CA_GROUP}/members").json()["value"]
    assert [m["id"] for m in members] == [MEGAN]
    assert client.delete(f"/v1.0/groups/{CA_GROUP}/members/{MEGAN}/$ref").status_code == 204
    assert client.delete(f"/v1.0/groups/{CA_GROUP}/members/{MEGAN}/$ref").status_code == 404
    bad = {"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/nope"}
    assert client.post(f"/v1.0/groups/{CA_GROUP}/members/$ref", json=bad).status_code == 404
    assert client.get("/v1.0/groups/nope").status_code == 404
    r = client.patch(f"/v1.0/groups/{CA_GROUP}", json={"members@odata.bind": [
        f"https://graph.microsoft.com/v1.0/directoryObjects/{MEGAN}",
        f"https://graph.microsoft.com/v1.0/directoryObjects/{OBRIEN}"]})
    assert r.status_code == 204
    group = next(g for g in server.state()["groups"] if g["id"] == CA_GROUP)
    assert group["members"] == []  # users are listed under each user's memberOf in the dump
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)
    assert CA_GROUP in megan["memberOf"]


def test_mail_folders_and_well_known_names(client):
    folders = client.get(f"/v1.0/users/{MEGAN}/mailFolders").json()["value"]
    names = {f["displayName"]: f["id"] for f in folders}
    for name in ("Inbox", "Archive", "Deleted Items", "Junk Email", "RSS Feeds", "Sent Items"):
        assert name in names
    for wk, name in (("inbox", "Inbox"), ("archive", "Archive"), ("deleteditems",
                     "Deleted Items"), ("junkemail", "Junk Email")):
        r = client.get(f"/v1.0/users/{MEGAN}/mailFolders/{wk}")
        assert r.status_code == 200 and r.json()["id"] == names[name]
    children = client.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["Newsletters"]
    rules = client.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules").json()["value"]
    hiding = next(r for r in rules if r["displayName"] == ".")
    assert hiding["actions"]["moveToFolder"] == names["RSS Feeds"]
    assert hiding["actions"]["markAsRead"] and hiding["actions"]["stopProcessingRules"]


def test_rules_patch_delete_and_hidden_not_visible(server, client):
    base = f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules"
    rules = client.get(base).json()["value"]
    assert len(rules) == 5  # the hidden rule and the junk e-mail rule are Exchange-only
    fwd = next(r for r in rules if r["actions"].get("forwardTo"))
    assert fwd["actions"]["forwardTo"][0]["emailAddress"]["address"] == \
        "ap.remittance@gmail.example"
    r = client.patch(f"{base}/{fwd['id']}", json={"isEnabled": False})
    assert r.status_code == 200 and r.json()["isEnabled"] is False
    assert client.get(f"{base}/{fwd['id']}").json()["isEnabled"] is False
    assert client.get(f"{base}/{fwd['id']}").json()["conditions"]["subjectContains"]
    assert client.delete(f"{base}/{fwd['id']}").status_code == 204
    assert client.get(f"{base}/{fwd['id']}").status_code == 404
    assert client.get(f"{base}/AQAAAJ5dZqM=").status_code == 404  # hidden rule


def test_no_mailbox_and_send_mail(server, client):
    r = client.get(f"/v1.0/users/{GUEST}/mailFolders/inbox/messageRules")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    msg = {"message": {"subject": "Your account was secured", "body": {"contentType": "Text",
           "content": "hi"}, "toRecipients": [{"emailAddress": {"address": "soc@contoso.com"}}]},
           "saveToSentItems": False}
    r = client.post(f"/v1.0/users/{OBRIEN}/sendMail", json=msg)
    assert r.status_code == 202
    sent = server.state()["sentMail"]
    assert sent[0]["from"] == "o'brien@contoso.com"
    assert sent[0]["message"]["subject"] == "Your account was secured"
    assert server.requests()[-1]["cls"] == "mailbox"


MOBILE_ID = "3179e48a-750b-4051-897c-87b9720928f7"
ALT_MOBILE_ID = "b6332ec1-7057-4abe-9331-3d72feddfe41"
OFFICE_ID = "e37fc753-ff3b-4958-9484-eaa9425c82bc"


def _audits(client, **params) -> list[dict]:
    out: list[dict] = []
    body = client.get("/v1.0/auditLogs/directoryAudits", params=params).json()
    for _ in range(50):
        out += body["value"]
        if not body.get("@odata.nextLink"):
            return out
        body = client.get(body["@odata.nextLink"]).json()
    raise AssertionError("paging did not end")


def test_directory_audits_date_the_seeded_phone_and_page(server, client):
    # the demo's attacker phone has no createdDateTime; a security-info event dates it
    events = _audits(client, **{"$filter": "activityDateTime ge 2026-11-18T03:12:44Z and "
                                           "loggedByService eq 'Authentication Methods'"})
    ev = next(e for e in events if e["targetResources"][0]["id"] == MEGAN)
    assert ev["activityDisplayName"] == "User registered security info"
    assert ev["activityDateTime"].startswith("2026-11-25T03:18:07")
    assert ev["category"] == "UserManagement" and ev["result"] == "success"
    assert ev["targetResources"][0]["type"] == "User"
    assert any("Alternate Mobile" in d["value"] for d in ev["additionalDetails"])
    assert set(ev) >= {"id", "correlationId", "initiatedBy", "operationType", "resultReason"}
    # documented filters only: category is not filterable, lambdas are refused here
    assert client.get("/v1.0/auditLogs/directoryAudits",
                      params={"$filter": "category eq 'UserManagement'"}).status_code == 400
    # paging with skiptoken
    server.configure(page_sizes={"directoryAudits": 1})
    with server.tenant.lock:
        user = server.tenant.find_user(MEGAN)
        for _ in range(2):
            server.tenant.record_security_info(user, {"@odata.type":
                                               "#microsoft.graph.emailAuthenticationMethod"},
                                               "updated", when="2026-11-26T00:00:00Z")
    first = client.get("/v1.0/auditLogs/directoryAudits").json()
    assert len(first["value"]) == 1 and "$skiptoken" in first["@odata.nextLink"]
    security_info = [e for e in _audits(client) if e["category"] == "UserManagement"
                     and "security info" in e["activityDisplayName"]]
    assert len(security_info) == 3  # the seeded phone and the two updates, over pages


def test_registration_writes_an_audit_event_that_can_arrive_late(server, client):
    base = f"/v1.0/users/{OBRIEN}/authentication"
    server.configure(audit_latency_seconds=3600)
    r = client.post(f"{base}/phoneMethods", json={"phoneNumber": "+1 5550199",
                                                  "phoneType": "mobile"})
    assert r.status_code == 201 and r.json()["id"] == MOBILE_ID
    assert r.json()["createdDateTime"] is None
    assert client.post(f"{base}/phoneMethods", json={"phoneNumber": "+1 5550100",
                                                     "phoneType": "mobile"}).status_code == 400
    assert not [e for e in _audits(client) if e["targetResources"][0]["id"] == OBRIEN], \
        "not in the log yet"
    server.tenant.release_audit_events()
    assert [e["activityDisplayName"] for e in _audits(client)
            if e["targetResources"][0]["id"] == OBRIEN] == ["Admin registered security info"]


def test_phone_delete_order_and_default_method(server, client):
    with server.tenant.lock:
        server.tenant.find_user(MEGAN)["defaultMfaMethod"] = "alternateMobile"
    base = f"/v1.0/users/{MEGAN}/authentication/phoneMethods"
    # a mobile cannot go while an alternate mobile exists
    assert client.delete(f"{base}/{MOBILE_ID}").status_code == 400
    # the default method cannot go while it is the default
    r = client.delete(f"{base}/{ALT_MOBILE_ID}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "badRequest"
    with server.tenant.lock:
        server.tenant.find_user(MEGAN)["defaultMfaMethod"] = "push"
    assert client.delete(f"{base}/{ALT_MOBILE_ID}").status_code == 204
    assert client.delete(f"{base}/{MOBILE_ID}").status_code == 204
    deleted = [e for e in _audits(client) if e["activityDisplayName"] ==
               "Admin deleted security info"]
    assert len(deleted) == 2
