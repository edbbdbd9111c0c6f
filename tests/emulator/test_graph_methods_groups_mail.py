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
    phone = next(m for m in methods if m["@odata.type"].endswith("phoneAuthenticationMethod"))
    assert "createdDateTime" not in phone and phone["phoneType"] == "mobile"
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
    assert len(rules) == 4  # the hidden fifth rule is Exchange-only
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
