"""Secure score history and control profiles, and the 403 switch."""

from __future__ import annotations


def test_scores_newest_first_with_top(client):
    body = client.get("/v1.0/security/secureScores", params={"$top": "3"}).json()
    days = [s["createdDateTime"] for s in body["value"]]
    assert len(days) == 3 and days == sorted(days, reverse=True)
    assert body["value"][0]["controlScores"] and body["value"][0]["maxScore"] > 0


def test_control_profiles(client):
    profiles = client.get("/v1.0/security/secureScoreControlProfiles").json()["value"]
    assert {p["controlCategory"] for p in profiles} >= {"Identity", "Data", "Device", "Apps"}
    p = profiles[0]
    for key in ("id", "title", "maxScore", "implementationCost", "userImpact", "tier",
                "threats", "remediation", "actionType", "service", "deprecated"):
        assert key in p


def test_forbidden_switch(server, client):
    server.configure(secure_score_forbidden=True)
    for path in ("/v1.0/security/secureScores", "/v1.0/security/secureScoreControlProfiles"):
        r = client.get(path)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "Authorization_RequestDenied"
    assert server.requests()[0]["cls"] == "security"


def test_seeded_scores_are_served(server, client):
    seed = server.state()
    seed["secureScores"] = [{"id": "s1", "createdDateTime": "2026-11-01T00:00:00Z",
                             "currentScore": 10.0, "maxScore": 20.0, "controlScores": []}]
    server.load_tenant(seed)
    assert [s["id"] for s in client.get("/v1.0/security/secureScores").json()["value"]] == ["s1"]
