"""Inbox-rule classification: positive and negative fixtures side by side."""

from __future__ import annotations

import pytest

from shared.playbook.rule_analysis import (
    exchange_rule_reasons,
    graph_rule_reasons,
    is_system_rule,
    pair_rules,
    row_rule_identity,
    rule_identity_of,
)
from shared.policy import DEFAULT_KEYWORDS

INTERNAL = {"contoso.com", "contoso.onmicrosoft.com"}
FOLDERS = {"f-rss": "RSS Feeds", "f-arch": "Archive", "f-news": "Newsletters",
           "f-del": "Deleted Items"}


def ext(addr: str) -> list[dict]:
    return [{"emailAddress": {"name": addr, "address": addr}}]


SUSPICIOUS = [
    ({"conditions": {"subjectContains": ["invoice"]}, "actions": {"forwardTo": ext("x@evil.test")}},
     "forwardTo outside"),
    ({"conditions": {}, "actions": {"redirectTo": {"emailAddress": {"address": "a@b.test"}}}},
     "redirectTo outside"),
    ({"conditions": {"senderContains": ["boss"]}, "actions": {"delete": True}}, "deletes"),
    ({"conditions": {}, "actions": {"permanentDelete": True}}, "permanently"),
    ({"conditions": {"bodyContains": ["hacked"]},
      "actions": {"moveToFolder": "f-rss", "markAsRead": True, "stopProcessingRules": True}},
     "RSS Feeds"),
    ({"conditions": {"subjectContains": ["wire transfer"]}, "actions": {"moveToFolder": "f-arch"}},
     "Archive"),
    ({"conditions": {}, "actions": {"moveToFolder": "f-del"}}, "Deleted Items"),
    ({"conditions": {"senderContains": ["x"]},
      "actions": {"markAsRead": True, "stopProcessingRules": True}}, "marks messages read"),
]
BENIGN = [
    {"conditions": {"senderContains": ["newsletter"]}, "actions": {"moveToFolder": "f-news"}},
    {"conditions": {"fromAddresses": ext("p@contoso.com")}, "actions": {"markImportance": "high"}},
    {"conditions": {"senderContains": ["@fabrikam.com"]}, "actions": {"moveToFolder": "f-arch"}},
    {"conditions": {"subjectContains": ["invoice"]},
     "actions": {"forwardTo": ext("ap@contoso.com")}},
    {"conditions": {"subjectContains": ["payment"]}, "actions": {"markImportance": "high"}},
    {"conditions": {}, "actions": {}},
]


@pytest.mark.parametrize(("rule", "why"), SUSPICIOUS)
def test_suspicious_graph_rules(rule, why):
    reasons = graph_rule_reasons(rule, FOLDERS, INTERNAL, DEFAULT_KEYWORDS)
    assert any(why in r for r in reasons), reasons


@pytest.mark.parametrize("rule", BENIGN)
def test_benign_graph_rules_are_left_alone(rule):
    assert graph_rule_reasons(rule, FOLDERS, INTERNAL, DEFAULT_KEYWORDS) == []


def test_exchange_rows_for_hidden_rules():
    hidden = {"Name": "", "RedirectTo": ['"ap" [SMTP:ap.remittance@gmail.example]'],
              "MarkAsRead": True}
    assert any("RedirectTo" in r for r in exchange_rule_reasons(hidden, INTERNAL,
                                                                 DEFAULT_KEYWORDS))
    benign = {"Name": "vendor", "MoveToFolder": "Archive", "From": ["v@fabrikam.com"]}
    assert exchange_rule_reasons(benign, INTERNAL, DEFAULT_KEYWORDS) == []
    rss = {"Name": ".", "MoveToFolder": "megan@contoso.com:\\RSS Feeds"}
    assert exchange_rule_reasons(rss, INTERNAL, DEFAULT_KEYWORDS) == ["moves messages to RSS Feeds"]


EX_ADELE = ('"Adele Vance" [EX:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)'
            '/cn=Recipients/cn=3f2a9c0d5e8b4a71b6c2d9e0f1a2b3c4-adele]')


@pytest.mark.parametrize("recipient", [
    EX_ADELE,
    "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=x-y",
    '"AP" [SMTP:ap@contoso.com]',
    "ap@contoso.com",
])
def test_forwarding_to_colleagues_is_left_alone(recipient):
    """An EX: recipient is a mailbox of the organisation; SMTP in an accepted domain too."""
    for key in ("ForwardTo", "RedirectTo", "ForwardAsAttachmentTo"):
        row = {"Name": "to a colleague", key: [recipient], "SubjectContainsWords": ["invoice"]}
        assert exchange_rule_reasons(row, INTERNAL, DEFAULT_KEYWORDS) == []


@pytest.mark.parametrize("recipient", [
    '"AP Remittance" [SMTP:ap.remittance@gmail.example]',
    "ap.remittance@gmail.example",
    '"Lookalike" [SMTP:ap@contoso.com.evil.example]',
])
def test_forwarding_outside_is_still_caught(recipient):
    row = {"Name": "x", "ForwardTo": [EX_ADELE, recipient]}
    reasons = exchange_rule_reasons(row, INTERNAL, DEFAULT_KEYWORDS)
    assert reasons and "ForwardTo outside" in reasons[0] and "Adele" not in reasons[0]


def test_system_rules_only_when_graph_does_not_show_them():
    junk = {"Name": "Junk E-mail Rule", "MoveToFolder": "megan:\\Junk Email"}
    oof = {"Name": "Microsoft.Exchange.OOF.KnownExternalSenders.Global"}
    assert is_system_rule(junk, visible_in_graph=False)
    assert is_system_rule(oof, visible_in_graph=False)
    assert not is_system_rule(junk, visible_in_graph=True), "a visible rule borrowing the name"
    assert not is_system_rule({"Name": ""}, visible_in_graph=False)


def test_graph_ids_map_to_rule_identities_and_rules_pair_up():
    assert rule_identity_of("AQAAAOQfqLg=") == str(0xB8A81FE400000001)
    assert rule_identity_of("not base64!") is None and rule_identity_of("AQAA") is None
    graph = [{"id": "AQAAAOQfqLg=", "displayName": "same"},
             {"id": "opaque", "displayName": "unique"},
             {"id": "opaque2", "displayName": "same"}]
    rows = [{"Name": "same", "RuleIdentity": str(0xB8A81FE400000001)},
            {"Name": "unique", "Identity": "megan\\42"},
            {"Name": "same", "RuleIdentity": "7"},
            {"Name": "hidden", "RuleIdentity": "8"}]
    pairs = pair_rules(graph, rows)
    assert (graph[0], rows[0]) in pairs
    assert (graph[1], rows[1]) in pairs, "a unique name pairs when the id does not"
    assert (graph[2], None) in pairs, "an ambiguous name never pairs"
    assert (None, rows[2]) in pairs and (None, rows[3]) in pairs
    assert row_rule_identity(rows[1]) == "42"
