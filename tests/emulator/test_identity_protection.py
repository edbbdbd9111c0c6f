"""riskyUsers, confirmCompromised/dismiss and riskDetections paging and filtering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devtools.emulator import EmulatorServer, make_tenant

from .conftest import MEGAN, OBRIEN


def test_risky_users_filter(client):
    r = client.get("/v1.0/identityProtection/riskyUsers",
                   params={"$filter": "riskLevel eq 'high' and riskState eq 'atRisk'"})
    assert [u["id"] for u in r.json()["value"]] == [MEGAN]
    assert "history" not in r.json()["value"][0]
    r = client.get(f"/v1.0/identityProtection/riskyUsers/{MEGAN}/history")
    assert r.status_code == 200 and len(r.json()["value"]) == 1


def test_confirm_compromised_creates_admin_detection(server, client):
    r = client.post("/v1.0/identityProtection/riskyUsers/confirmCompromised",
                    json={"userIds": [OBRIEN, "00000000-0000-0000-0000-000000000000"]})
    assert r.status_code == 204
    ru = client.get(f"/v1.0/identityProtection/riskyUsers/{OBRIEN}").json()
    assert ru["riskState"] == "confirmedCompromised" and ru["riskLevel"] == "high"
    hist = client.get(f"/v1.0/identityProtection/riskyUsers/{OBRIEN}/history").json()["value"]
    assert hist[-1]["riskState"] == "confirmedCompromised"
    dets = client.get("/v1.0/identityProtection/riskDetections", params={
        "$filter": f"userId eq '{OBRIEN}' and riskEventType eq 'adminConfirmedUserCompromised'"
    }).json()["value"]
    assert len(dets) == 1
    det = dets[0]
    assert len(det["id"]) == 64 and int(det["id"], 16) >= 0
    assert det["detectedDateTime"].endswith("Z") and len(det["detectedDateTime"]) == 28
    assert isinstance(det["additionalInfo"], str)
    assert server.requests()[0]["write"] is True


def test_confirm_limit_and_validation(server, client):
    server.configure(confirm_max_user_ids=3)
    r = client.post("/v1.0/identityProtection/riskyUsers/confirmCompromised",
                    json={"userIds": [MEGAN, OBRIEN, "a", "b"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"
    assert client.post("/v1.0/identityProtection/riskyUsers/confirmCompromised",
                       json={"userIds": []}).status_code == 400
    assert server.state()["riskyUsers"][0]["riskState"] == "atRisk"


def test_dismiss(client):
    assert client.post("/v1.0/identityProtection/riskyUsers/dismiss",
                       json={"userIds": [MEGAN]}).status_code == 204
    ru = client.get(f"/v1.0/identityProtection/riskyUsers/{MEGAN}").json()
    assert (ru["riskState"], ru["riskLevel"]) == ("dismissed", "none")


def test_detections_datetime_filter_order_and_paging():
    seed = make_tenant(60, offenders={"risky_high": 45}, seed=3)
    with EmulatorServer(seed) as srv:
        import httpx

        with httpx.Client(headers={"Authorization": "Bearer test-token"}, timeout=10) as c:
            url = srv.base_url + "/v1.0/identityProtection/riskDetections"
            body = c.get(url).json()
            assert len(body["value"]) == 20 and "@odata.nextLink" in body
            seen, next_url = [], url + "?$filter=detectedDateTime ge 2026-01-01T00:00:00Z"
            while next_url:
                page = c.get(next_url).json()
                seen += page["value"]
                next_url = page.get("@odata.nextLink")
            times = sorted(d["detectedDateTime"] for d in seen)
            assert len(seen) == 45 and len({d["id"] for d in seen}) == 45
            # no documented order: the emulator serves the list unsorted (but stably)
            assert [d["detectedDateTime"] for d in seen] != times
            cut = times[30]
            newer = c.get(url, params={"$filter": f"detectedDateTime gt {cut}",
                                       "$top": "500"}).json()["value"]
            assert len(newer) == 14
            assert c.get(url, params={"$top": "501"}).status_code == 400
            # $orderby is not among the list's documented query options
            assert c.get(url, params={"$orderby": "detectedDateTime desc"}).status_code == 400
            bad = c.get(url, params={"$filter": "detectedDateTime ge 2026-13-01"})
            assert bad.status_code == 400


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def test_offline_detections_surface_late_and_are_never_listed_early(server, client):
    """A detection seeded to surface 30 hours after its detectedDateTime is invisible to the
    list, to a filter that covers its time, and to a GET by id until then."""
    now = datetime.now(UTC)
    with server.tenant.lock:
        late = server.tenant.add_detection({
            "id": "a" * 64, "userId": MEGAN, "riskLevel": "high", "riskEventType":
            "leakedCredentials", "detectionTimingType": "offline",
            "detectedDateTime": _iso(now - timedelta(hours=29)), "visibleAfterMinutes": 30 * 60})
        server.tenant.add_detection({
            "id": "b" * 64, "userId": MEGAN, "detectedDateTime": _iso(now - timedelta(hours=2)),
            "visibleAt": _iso(now - timedelta(minutes=1))})
    url = "/v1.0/identityProtection/riskDetections"
    since = {"$filter": f"detectedDateTime ge {_iso(now - timedelta(hours=48))}", "$top": "500"}
    ids = {d["id"] for d in client.get(url, params=since).json()["value"]}
    assert "a" * 64 not in ids and "b" * 64 in ids
    assert client.get(f"{url}/{'a' * 64}").status_code == 404
    assert all("visibleAt" not in d for d in client.get(url, params=since).json()["value"])
    with server.tenant.lock:  # an hour later (30 h after detection) it surfaces
        late["visibleAt"] = _iso(now - timedelta(seconds=1))
    ids = {d["id"] for d in client.get(url, params=since).json()["value"]}
    assert "a" * 64 in ids


def test_risky_user_get_is_404_without_a_risk_record(client):
    nobody = "0a1b2c3d-0000-4000-8000-00000000abcd"
    r = client.get(f"/v1.0/identityProtection/riskyUsers/{nobody}")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] and error["message"]
    megan = client.get(f"/v1.0/identityProtection/riskyUsers/{MEGAN}").json()
    assert (megan["id"], megan["riskState"], megan["riskLevel"]) == (MEGAN, "atRisk", "high")
    assert "history" not in megan and "value" not in megan  # one object, not a collection
