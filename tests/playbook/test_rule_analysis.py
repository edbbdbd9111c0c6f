"""Inbox-rule classification: positive and negative fixtures side by side."""

from __future__ import annotations

import pytest

from shared.playbook.rule_analysis import exchange_rule_reasons, graph_rule_reasons
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
